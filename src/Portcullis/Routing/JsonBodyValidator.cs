using System.Buffers;
using System.Text.Json;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// Checks a JSON body against a route's limits as its bytes arrive, with System.Text.Json's
/// <see cref="Utf8JsonReader"/> resumed across reads (<see cref="JsonReaderState"/>): only the unfinished token
/// at the end of a read is kept, so the memory held is bounded by the longest token allowed, not the body.
/// One per request; not thread-safe (a body is read by one reader at a time).
/// </summary>
internal sealed class JsonBodyValidator : IDisposable
{
    // Room beyond the longest string for its quotes and a token's neighbours kept with it.
    private const int TokenSlack = 64;

    private readonly CompiledJsonLimits _limits;
    private JsonReaderState _state;
    private byte[] _buffer;
    private int _pending;
    private long _total;

    // Per open container level (1 = the top-level value): members or items seen so far, and whether it is an array.
    private readonly int[] _counts;
    private readonly bool[] _isArray;

    public JsonBodyValidator(CompiledJsonLimits limits)
    {
        _limits = limits;
        // The reader's own depth limit sits one above ours, so ours is the one that answers (with its own code).
        _state = new JsonReaderState(new JsonReaderOptions { MaxDepth = limits.MaxDepth + 1, CommentHandling = JsonCommentHandling.Disallow });
        _buffer = ArrayPool<byte>.Shared.Rent(4096);
        _counts = ArrayPool<int>.Shared.Rent(limits.MaxDepth + 2);
        _isArray = ArrayPool<bool>.Shared.Rent(limits.MaxDepth + 2);
    }

    /// <summary>The first limit the body broke; null while it keeps to them.</summary>
    public ReasonCode? Refusal { get; private set; }

    /// <summary>Bytes seen so far.</summary>
    public long Total => _total;

    /// <summary>Checks the next bytes of the body; returns the refusal once one is found.</summary>
    public ReasonCode? Feed(ReadOnlySpan<byte> data)
    {
        if (Refusal is not null) return Refusal;
        _total += data.Length;
        if (_total > _limits.MaxSize) return Refusal = ReasonCodes.JsonTooLarge;
        var length = _pending + data.Length;
        if (length > _buffer.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(length, _buffer.Length * 2));
            _buffer.AsSpan(0, _pending).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }

        data.CopyTo(_buffer.AsSpan(_pending));
        return Parse(length, isFinalBlock: false);
    }

    /// <summary>The body ended: what is left must complete exactly one JSON value.</summary>
    public ReasonCode? Complete() => Refusal ?? Parse(_pending, isFinalBlock: true);

    private ReasonCode? Parse(int length, bool isFinalBlock)
    {
        var reader = new Utf8JsonReader(_buffer.AsSpan(0, length), isFinalBlock, _state);
        try
        {
            while (reader.Read())
            {
                if (Check(ref reader) is { } refusal) return Refusal = refusal;
            }
        }
        catch (JsonException)
        {
            return Refusal = ReasonCodes.JsonMalformed;
        }

        if (isFinalBlock)
        {
            // A complete document was read only when the reader stands back at the top level after a token.
            return reader.TokenType == JsonTokenType.None || reader.CurrentDepth != 0 ? Refusal = ReasonCodes.JsonMalformed : null;
        }

        _state = reader.CurrentState;
        Keep(_buffer.AsSpan((int)reader.BytesConsumed, length - (int)reader.BytesConsumed));
        // What is left is one unfinished token: longer than any string may be, it cannot end well, and keeping
        // it would let one token hold the whole body in memory.
        return _pending > _limits.MaxStringLength + TokenSlack ? Refusal = ReasonCodes.JsonStringTooLong : null;
    }

    // Keeps the unread rest at the start of the buffer. It begins between tokens, and the reader leaves
    // whitespace, a separator and a property name unread until what follows completes them. Whitespace outside
    // strings only separates tokens, so each run is kept as one space: a run of spaces must neither count as a
    // long token nor be held in memory.
    private void Keep(ReadOnlySpan<byte> rest)
    {
        var target = _buffer.AsSpan(); // writes never pass reads: the rest sits at or after the buffer's start
        var written = 0;
        var inString = false;
        var escaped = false;
        foreach (var b in rest)
        {
            if (inString)
            {
                if (escaped) escaped = false;
                else if (b == (byte)'\\') escaped = true;
                else if (b == (byte)'"') inString = false;
            }
            else if (b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r')
            {
                if (written > 0 && target[written - 1] == (byte)' ') continue;
                target[written++] = (byte)' ';
                continue;
            }
            else if (b == (byte)'"')
            {
                inString = true;
            }

            target[written++] = b;
        }

        _pending = written;
    }

    private ReasonCode? Check(ref Utf8JsonReader reader)
    {
        var depth = reader.CurrentDepth;
        switch (reader.TokenType)
        {
            case JsonTokenType.StartObject or JsonTokenType.StartArray:
                if (depth >= _limits.MaxDepth) return ReasonCodes.JsonTooDeep;
                if (CountItem(depth) is { } tooMany) return tooMany;
                _counts[depth + 1] = 0;
                _isArray[depth + 1] = reader.TokenType == JsonTokenType.StartArray;
                return null;
            case JsonTokenType.EndObject or JsonTokenType.EndArray:
                return null;
            case JsonTokenType.PropertyName:
                if (reader.ValueSpan.Length > _limits.MaxStringLength) return ReasonCodes.JsonStringTooLong;
                return ++_counts[depth] > _limits.MaxObjectMembers ? ReasonCodes.JsonTooManyMembers : null;
            case JsonTokenType.String:
                if (reader.ValueSpan.Length > _limits.MaxStringLength) return ReasonCodes.JsonStringTooLong;
                return CountItem(depth);
            default:
                return CountItem(depth);
        }
    }

    // A value at this depth is one more item of the array that holds it (object members are counted by name).
    private ReasonCode? CountItem(int depth) =>
        depth > 0 && _isArray[depth] && ++_counts[depth] > _limits.MaxArrayItems ? ReasonCodes.JsonTooManyItems : null;

    public void Dispose()
    {
        ArrayPool<byte>.Shared.Return(_buffer);
        ArrayPool<int>.Shared.Return(_counts);
        ArrayPool<bool>.Shared.Return(_isArray);
        _buffer = [];
    }
}
