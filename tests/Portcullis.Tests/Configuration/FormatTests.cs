using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

public sealed class FormatTests
{
    // ---------------------------------------------------------------- durations

    [Theory]
    [InlineData("250ms", 250)]
    [InlineData("0ms", 0)]
    [InlineData("0s", 0)]
    [InlineData("5s", 5_000)]
    [InlineData("1m", 60_000)]
    [InlineData("2h", 7_200_000)]
    [InlineData("1d", 86_400_000)]
    [InlineData("1m30s", 90_000)]
    [InlineData("1h30m15s", 5_415_000)]
    [InlineData("1s500ms", 1_500)]
    [InlineData("1.5s", 1_500)]
    [InlineData(".5s", 500)]
    [InlineData("0.25h", 900_000)]
    [InlineData("  5s  ", 5_000)]
    [InlineData("120s", 120_000)]
    public void Duration_Parses(string text, double expectedMilliseconds)
    {
        Assert.True(DurationFormat.TryParse(text, out var value, out var error), error);
        Assert.Null(error);
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMilliseconds), value);
    }

    [Theory]
    [InlineData("", "empty duration")]
    [InlineData("   ", "empty duration")]
    [InlineData("10", "missing unit")]
    [InlineData("1s5", "missing unit")]
    [InlineData("-1s", "a duration cannot be negative")]
    [InlineData("-0s", "a duration cannot be negative")]
    [InlineData("5parsecs", "unknown unit 'parsecs'")]
    [InlineData("5S", "unknown unit 'S'")]
    [InlineData("5sec", "unknown unit 'sec'")]
    [InlineData("1us", "unknown unit 'us'")]
    [InlineData("s", "expected a number")]
    [InlineData("ms5", "expected a number")]
    [InlineData("+5s", "expected a number")]
    [InlineData("1..2s", "bad number")]
    [InlineData(".s", "bad number")]
    [InlineData("5 parsecs", null)]
    [InlineData("5 s", null)]
    [InlineData("00:00:05", null)]
    public void Duration_Rejects(string text, string? expectedError)
    {
        Assert.False(DurationFormat.TryParse(text, out var value, out var error));
        Assert.Equal(TimeSpan.Zero, value);
        Assert.NotNull(error);
        if (expectedError is not null) Assert.Equal(expectedError, error);
    }

    [Theory]
    [InlineData("99999999999d")]
    [InlineData("9999999999999999s")]
    [InlineData("10000000d10000000d")]
    public void Duration_TooLarge_IsRejectedNotThrown(string text)
    {
        Assert.False(DurationFormat.TryParse(text, out var value, out var error));
        Assert.Equal(TimeSpan.Zero, value);
        Assert.Equal("duration too large", error);
    }

    [Theory]
    [InlineData(0, "0s")]
    [InlineData(250, "250ms")]
    [InlineData(1_500, "1500ms")]
    [InlineData(5_000, "5s")]
    [InlineData(90_000, "90s")]
    [InlineData(300_000, "5m")]
    [InlineData(7_200_000, "2h")]
    public void Duration_Formats(double milliseconds, string expected)
    {
        var value = TimeSpan.FromMilliseconds(milliseconds);

        Assert.Equal(expected, DurationFormat.Format(value));
        Assert.True(DurationFormat.TryParse(expected, out var roundTripped, out _));
        Assert.Equal(value, roundTripped);
    }

    // ---------------------------------------------------------------- sizes

    [Theory]
    [InlineData("0", 0L)]
    [InlineData("512", 512L)]
    [InlineData("512B", 512L)]
    [InlineData("32KiB", 32L * 1024)]
    [InlineData("10MiB", 10L * 1024 * 1024)]
    [InlineData("2GiB", 2L * 1024 * 1024 * 1024)]
    [InlineData("1KB", 1_000L)]
    [InlineData("5MB", 5_000_000L)]
    [InlineData("3GB", 3_000_000_000L)]
    [InlineData("1K", 1024L)]
    [InlineData("1M", 1024L * 1024)]
    [InlineData("1G", 1024L * 1024 * 1024)]
    [InlineData("32kib", 32L * 1024)]
    [InlineData("10mb", 10_000_000L)]
    [InlineData(" 10 MiB ", 10L * 1024 * 1024)]
    public void Size_Parses(string text, long expectedBytes)
    {
        Assert.True(ByteSize.TryParse(text, out var size, out var error), error);
        Assert.Null(error);
        Assert.Equal(expectedBytes, size.Bytes);
    }

    [Theory]
    [InlineData("", "not a size")]
    [InlineData("lots", "not a size")]
    [InlineData("KiB", "not a size")]
    [InlineData("1.5MiB", "not a size")]
    [InlineData("10 parsecs", "not a size")]
    [InlineData("1,024", "not a size")]
    [InlineData("+5", "not a size")]
    [InlineData("8TiB", "not a size")]
    [InlineData("-5", "a size cannot be negative")]
    [InlineData("-5KiB", "a size cannot be negative")]
    [InlineData("9223372036854775807KiB", "size too large")]
    [InlineData("9007199254740992GB", "size too large")]
    public void Size_Rejects(string text, string expectedError)
    {
        Assert.False(ByteSize.TryParse(text, out var size, out var error));
        Assert.Equal(default, size);
        Assert.Equal(expectedError, error);
    }

    [Theory]
    [InlineData(0L, "0")]
    [InlineData(512L, "512")]
    [InlineData(1000L, "1000")]
    [InlineData(32L * 1024, "32KiB")]
    [InlineData(1536L * 1024, "1536KiB")]
    [InlineData(10L * 1024 * 1024, "10MiB")]
    public void Size_Formats(long bytes, string expected)
    {
        var size = new ByteSize(bytes);

        Assert.Equal(expected, size.ToString());
        Assert.True(ByteSize.TryParse(expected, out var roundTripped, out _));
        Assert.Equal(size, roundTripped);
    }

    [Fact]
    public void Size_Factories()
    {
        Assert.Equal(32L * 1024, ByteSize.FromKiB(32).Bytes);
        Assert.Equal(10L * 1024 * 1024, ByteSize.FromMiB(10).Bytes);
    }
}
