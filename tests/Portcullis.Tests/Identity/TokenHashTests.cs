using System.Security.Cryptography;
using System.Text;
using Portcullis.Identity;

namespace Portcullis.Tests.Identity;

public sealed class TokenHashTests
{
    private static TokenHash Sha256Of(byte[] bytes)
    {
        var digest = SHA256.HashData(bytes);
        return new TokenHash(BitConverter.ToUInt64(digest, 0), BitConverter.ToUInt64(digest, 8), BitConverter.ToUInt64(digest, 16), BitConverter.ToUInt64(digest, 24));
    }

    [Theory]
    [InlineData("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln")]
    [InlineData("")]
    public void Ascii_tokens_hash_their_bytes(string token) =>
        Assert.Equal(Sha256Of(Encoding.ASCII.GetBytes(token)), TokenHash.Of(token));

    [Fact]
    public void Tokens_longer_than_the_stack_buffer_hash_the_same_way()
    {
        var token = new string('a', TokenHash.StackLimit + 1);
        Assert.Equal(Sha256Of(Encoding.ASCII.GetBytes(token)), TokenHash.Of(token));
    }

    [Fact]
    public void Non_ascii_tokens_hash_their_utf8_bytes()
    {
        const string token = "tökén-✓";
        Assert.Equal(Sha256Of(Encoding.UTF8.GetBytes(token)), TokenHash.Of(token));
    }

    [Fact]
    public void Tokens_with_lone_surrogates_stay_distinct()
    {
        // Replacing invalid UTF-16 with U+FFFD would make these three collide; they must not.
        var high = "abc\uD800";
        var low = "abc\uDC00";
        var replaced = "abc\uFFFD";
        var hashes = new[] { TokenHash.Of(high), TokenHash.Of(low), TokenHash.Of(replaced) };
        Assert.Equal(3, hashes.Distinct().Count());
        Assert.Equal(TokenHash.Of(high), TokenHash.Of(new string(high.AsSpan())));
    }
}
