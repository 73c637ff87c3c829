using System.Globalization;

namespace Portcullis.Configuration;

/// <summary>A size in bytes, written in config as 512, 32KiB, 10MiB, 1GB (KB = 1000, KiB = 1024).</summary>
internal readonly record struct ByteSize(long Bytes)
{
    public static ByteSize FromKiB(long value) => new(value * 1024);

    public static ByteSize FromMiB(long value) => new(value * 1024 * 1024);

    public static ByteSize FromGiB(long value) => new(value * 1024 * 1024 * 1024);

    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("KiB", 1L << 10), ("MiB", 1L << 20), ("GiB", 1L << 30),
        ("KB", 1000), ("MB", 1000_000), ("GB", 1000_000_000),
        ("K", 1L << 10), ("M", 1L << 20), ("G", 1L << 30),
        ("B", 1),
    ];

    public static bool TryParse(string text, out ByteSize size, out string? error)
    {
        size = default;
        var s = text.Trim();
        long factor = 1;
        foreach (var (suffix, f) in Units)
        {
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                factor = f;
                s = s[..^suffix.Length].Trim();
                break;
            }
        }

        if (!long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            error = s.StartsWith('-') ? "a size cannot be negative" : "not a size";
            return false;
        }

        if (number > long.MaxValue / factor)
        {
            error = "size too large";
            return false;
        }

        size = new ByteSize(number * factor);
        error = null;
        return true;
    }

    public override string ToString()
    {
        if (Bytes != 0 && Bytes % (1L << 20) == 0) return (Bytes >> 20).ToString(CultureInfo.InvariantCulture) + "MiB";
        if (Bytes != 0 && Bytes % 1024 == 0) return (Bytes >> 10).ToString(CultureInfo.InvariantCulture) + "KiB";
        return Bytes.ToString(CultureInfo.InvariantCulture);
    }
}

/// <summary>Durations written as 250ms, 5s, 1m30s, 2h, 1d.</summary>
internal static class DurationFormat
{
    public static bool TryParse(string text, out TimeSpan value, out string? error)
    {
        value = TimeSpan.Zero;
        var s = text.Trim();
        if (s.Length == 0)
        {
            error = "empty duration";
            return false;
        }

        if (s[0] == '-')
        {
            error = "a duration cannot be negative";
            return false;
        }

        var i = 0;
        var total = TimeSpan.Zero;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.')) i++;
            if (start == i)
            {
                error = "expected a number";
                return false;
            }

            if (!double.TryParse(s.AsSpan(start, i - start), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                error = "bad number";
                return false;
            }

            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i])) i++;
            var unit = s[unitStart..i];
            try
            {
                TimeSpan part;
                switch (unit)
                {
                    case "ms": part = TimeSpan.FromMilliseconds(number); break;
                    case "s": part = TimeSpan.FromSeconds(number); break;
                    case "m": part = TimeSpan.FromMinutes(number); break;
                    case "h": part = TimeSpan.FromHours(number); break;
                    case "d": part = TimeSpan.FromDays(number); break;
                    case "" when i < s.Length && char.IsWhiteSpace(s[i]):
                        error = "no space is allowed between a number and its unit";
                        return false;
                    case "":
                        error = "missing unit";
                        return false;
                    default:
                        error = $"unknown unit '{unit}'";
                        return false;
                }

                total = checked(total + part);
            }
            catch (OverflowException)
            {
                error = "duration too large";
                return false;
            }
        }

        value = total;
        error = null;
        return true;
    }

    public static string Format(TimeSpan value)
    {
        if (value == TimeSpan.Zero) return "0s";
        if (value.Ticks % TimeSpan.TicksPerSecond != 0) return ((long)value.TotalMilliseconds).ToString(CultureInfo.InvariantCulture) + "ms";
        if (value.Ticks % TimeSpan.TicksPerHour == 0) return ((long)value.TotalHours).ToString(CultureInfo.InvariantCulture) + "h";
        if (value.Ticks % TimeSpan.TicksPerMinute == 0) return ((long)value.TotalMinutes).ToString(CultureInfo.InvariantCulture) + "m";
        return ((long)value.TotalSeconds).ToString(CultureInfo.InvariantCulture) + "s";
    }
}
