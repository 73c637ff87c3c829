using System.Text;
using System.Text.Json;
using Portcullis.Identity;

namespace Portcullis.Cli;

/// <summary>`portcullis keys list`: consumers and their keys with their state, as a table or JSON (never a secret; at most 8 characters of a hash).</summary>
internal static class KeysListing
{
    private static readonly string[] ListHeader = ["CONSUMER", "GROUP", "SCOPES", "KEY", "SHA256", "CREATED", "NOT BEFORE", "EXPIRES", "STATE"];

    public static int List(string path, bool json, TimeProvider time, TextWriter output)
    {
        var now = time.GetUtcNow();
        var full = Path.GetFullPath(path);
        var file = ApiKeyFileStore.Load(path, full, mustExist: true);
        var consumers = file.Consumers.OrderBy(c => c.Key, StringComparer.Ordinal).ToList();
        if (json)
        {
            output.WriteLine(Json(consumers, now));
            return PortcullisCli.Ok;
        }

        if (consumers.Count == 0)
        {
            output.WriteLine($"{path}: no consumers");
            return PortcullisCli.Ok;
        }

        WriteTable(consumers, now, output);
        return PortcullisCli.Ok;
    }

    private static string Json(List<KeyValuePair<string, ApiKeyConsumer>> consumers, DateTimeOffset now)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteStartArray("consumers");
            foreach (var (id, consumer) in consumers)
            {
                writer.WriteStartObject();
                writer.WriteString("id", id);
                if (consumer.Name is not null) writer.WriteString("name", consumer.Name);
                if (consumer.Group is not null) writer.WriteString("group", consumer.Group);
                writer.WriteStartArray("scopes");
                foreach (var scope in consumer.Scopes) writer.WriteStringValue(scope);
                writer.WriteEndArray();
                writer.WriteStartArray("keys");
                foreach (var record in consumer.Keys)
                {
                    writer.WriteStartObject();
                    writer.WriteString("id", record.Id);
                    writer.WriteString("sha256Prefix", HashPrefix(record.Sha256));
                    WriteTime(writer, "created", record.Created);
                    WriteTime(writer, "notBefore", record.NotBefore);
                    WriteTime(writer, "expires", record.Expires);
                    writer.WriteBoolean("revoked", record.Revoked);
                    writer.WriteString("state", record.StateAt(now).Name());
                    writer.WriteEndObject();
                }

                writer.WriteEndArray();
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteTable(List<KeyValuePair<string, ApiKeyConsumer>> consumers, DateTimeOffset now, TextWriter output)
    {
        var rows = new List<string[]> { ListHeader };
        foreach (var (id, consumer) in consumers)
        {
            var scopes = consumer.Scopes.Count == 0 ? "-" : string.Join(",", consumer.Scopes);
            if (consumer.Keys.Count == 0) rows.Add([id, consumer.Group ?? "-", scopes, "-", "-", "-", "-", "-", "no keys"]);
            foreach (var record in consumer.Keys)
            {
                rows.Add([id, consumer.Group ?? "-", scopes, record.Id, HashPrefix(record.Sha256), FormatOrDash(record.Created), FormatOrDash(record.NotBefore), FormatOrDash(record.Expires), record.StateAt(now).Name()]);
            }
        }

        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var row in rows)
        {
            output.WriteLine(string.Join("  ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        }
    }

    private static string HashPrefix(string sha256) => sha256.Length <= 8 ? sha256 : sha256[..8];

    private static string FormatOrDash(DateTimeOffset? value) => value is { } v ? KeysCommand.Format(v) : "-";

    private static void WriteTime(Utf8JsonWriter writer, string name, DateTimeOffset? value)
    {
        if (value is { } v) writer.WriteString(name, KeysCommand.Format(v));
        else writer.WriteNull(name);
    }
}
