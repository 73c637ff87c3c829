// DOM helpers: every value goes in as text (textContent or an attribute), never as markup.

/** Creates an element; attrs are set as attributes (or properties for `text`, `className`), children appended. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else if (name === 'className') node.className = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

export const fmt = {
  count: (n) => integer.format(n ?? 0),
  rate: (n) => decimal.format(n ?? 0),
  percent: (ratio) => (ratio === null || ratio === undefined ? '–' : decimal.format(ratio * 100) + ' %'),
  ms: (n) => (n === null || n === undefined ? '–' : n >= 100 ? integer.format(n) + ' ms' : decimal.format(n) + ' ms'),
  bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = n ?? 0;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return decimal.format(value) + ' ' + units[unit];
  },
  // Times are shown in UTC everywhere (charts, tables, the range inputs), as the gateway's logs are.
  time: (iso) => new Date(iso).toISOString().slice(0, 19).replace('T', ' '),
};

/** A table: columns are { title, cell(row) → Node|string, className? }; an empty list shows `empty`. */
export function table(id, columns, rows, empty = 'No data in this range.') {
  if (rows.length === 0) return el('p', { id, className: 'empty', text: empty });
  return el('table', { id, className: 'data' },
    el('thead', {}, el('tr', {}, columns.map((c) => el('th', { className: c.className, text: c.title })))),
    el('tbody', {}, rows.map((row) => el('tr', { 'data-key': row.key ?? '(none)' },
      columns.map((c) => el('td', { className: c.className }, c.cell(row)))))));
}

/** A titled panel; `rows` is the link to the samples behind it. */
export function panel(title, rows, ...children) {
  return el('section', { className: 'panel' },
    el('h2', {}, title, rows ? el('a', { className: 'rows', href: rows, text: 'rows →' }) : null),
    ...children);
}
