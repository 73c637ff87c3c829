using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Core;

namespace Portcullis.Configuration;

/// <summary>Malformed YAML: pointing at the real culprit (tabs, unclosed brackets, unquoted aliases and variables) with a hint.</summary>
internal sealed partial class YamlConfigBinder
{
    private void ReportMalformed(string yaml, Exception ex, Parser parser)
    {
        const string hint = "check indentation, quoting and that every key is followed by ': '";
        var lines = yaml.Split('\n');

        // YamlDotNet positions these at the enclosing node; point at the real culprit instead.
        for (var i = 0; i < lines.Length; i++)
        {
            var indent = lines[i].Length - lines[i].TrimStart(' ', '\t').Length;
            var tab = lines[i].IndexOf('\t', 0, indent);
            if (tab >= 0)
            {
                Error(i + 1, tab + 1, "malformed YAML: a tab is used for indentation", "indent with spaces only");
                return;
            }
        }

        if (ex is AnchorNotFoundException)
        {
            for (var i = 0; i < lines.Length; i++)
            {
                var match = UnquotedAlias().Match(lines[i]);
                if (match.Success)
                {
                    var star = match.Groups["alias"].Index;
                    Error(i + 1, star + 1, $"malformed YAML: '{match.Groups["alias"].Value.TrimEnd()}' is read as a YAML alias", $"quote it: \"{match.Groups["alias"].Value.TrimEnd()}\"");
                    return;
                }
            }
        }

        var mark = ex is YamlException yamlException ? yamlException.Start : parser.Current?.Start ?? Mark.Empty;
        var line = (int)Math.Max(1, mark.Line);
        var column = (int)Math.Max(1, mark.Column);

        // `address: ${ADDR}` inside `{ … }`: the variable's own braces end the flow mapping early.
        if (ex is YamlException && FlowVariable(lines, line) is { } variable)
        {
            Error(line, variable.Index + 1, $"malformed YAML: {variable.Value} inside a flow mapping or list ({{ … }} or [ … ]) is read as YAML, not as a variable",
                $"quote it: \"{variable.Value}\"");
            return;
        }

        // YamlDotNet's parser gives up with a bare InvalidOperationException when the text ends inside a
        // flow collection: the mark is where that collection opened.
        if (ex is not YamlException)
        {
            var (opened, openLine, openColumn) = UnclosedFlow(lines, line, column);
            if (opened != '\0') (line, column) = (openLine, openColumn);
            var (what, close) = opened switch
            {
                '{' => ("this '{'", '}'),
                '[' => ("this '['", ']'),
                _ => ("a '{' or '['", '}'),
            };
            Error(line, column, $"malformed YAML: {what} is never closed: the file ends before its '{close}'",
                $"add the missing '{close}' (or quote a value that contains '{{' or '[')");
            return;
        }

        var message = ex.InnerException?.Message ?? ex.Message;
        // YamlDotNet prefixes messages with its own (Line: .., Col: ..) text; we print our own.
        message = PositionPrefix().Replace(message, "").Trim();
        Error(line, column, $"malformed YAML: {message}",
            message.StartsWith("Duplicate key", StringComparison.Ordinal) ? "a key may appear only once in a mapping: remove one of them or merge the two" : hint);
    }

    // The outermost '{' or '[' from the parser's mark on that is still open at the end (quotes and comments skipped).
    private static (char Opened, int Line, int Column) UnclosedFlow(string[] lines, int line, int column)
    {
        var open = new Stack<(char, int, int)>();
        for (var i = line - 1; i < lines.Length; i++)
        {
            var text = lines[i];
            char quote = '\0';
            for (var j = i == line - 1 ? column - 1 : 0; j < text.Length; j++)
            {
                var c = text[j];
                if (quote != '\0')
                {
                    if (c == quote) quote = '\0';
                    continue;
                }

                if (c is '"' or '\'') quote = c;
                else if (c == '#' && (j == 0 || char.IsWhiteSpace(text[j - 1]))) break;
                else if (c is '{' or '[') open.Push((c, i + 1, j + 1));
                else if (c is '}' or ']' && open.Count > 0) open.Pop();
            }
        }

        return open.Count == 0 ? ('\0', line, column) : open.Last();
    }

    // An unquoted ${…} on the error's line (or the line before, where the parser may stop at the next token).
    private static Match? FlowVariable(string[] lines, int line)
    {
        for (var i = Math.Min(line, lines.Length) - 1; i >= Math.Max(0, line - 2); i--)
        {
            var match = UnquotedVariable().Match(lines[i]);
            if (match.Success && lines[i].TrimStart().StartsWith('#') is false && lines[i].Contains('{', StringComparison.Ordinal)) return match;
        }

        return null;
    }

    [GeneratedRegex(@"(?:^|[:\-\[,]\s*)(?<alias>\*[^\s,\]\}]*)")]
    private static partial Regex UnquotedAlias();

    // ${…} right after ':', '[', ',' or '{' (unquoted): a value, not part of a quoted string.
    [GeneratedRegex(@"(?<=(?:^|[:\[,{])\s*)\$\{[^}""'\s]*\}")]
    private static partial Regex UnquotedVariable();

    [GeneratedRegex(@"^\(Line: \d+, Col: \d+, Idx: \d+\) - \(Line: \d+, Col: \d+, Idx: \d+\):")]
    private static partial Regex PositionPrefix();
}
