using System.Security.Cryptography;
using System.Text.Json;

namespace Portcullis.Tls;

/// <summary>The JSON of GET /admin/certificates: listener certificates and client CA bundles with expiry and reload state.</summary>
internal static class CertificateStatusWriter
{
    public static void Write(Utf8JsonWriter w, IEnumerable<ListenerCertificates> listeners, DateTimeOffset now)
    {
        var ordered = listeners.OrderBy(l => l.Name, StringComparer.Ordinal).ToArray();
        w.WriteStartArray("certificates");
        foreach (var listener in ordered)
        {
            foreach (var slot in listener.Slots) WriteCertificate(w, listener, slot, now);
        }

        w.WriteEndArray();

        w.WriteStartArray("clientCertificateAuthorities");
        foreach (var listener in ordered)
        {
            if (listener.ClientCa is { } slot) WriteClientCa(w, listener, slot, now);
        }

        w.WriteEndArray();
    }

    private static void WriteCertificate(Utf8JsonWriter w, ListenerCertificates listener, CertificateSlot slot, DateTimeOffset now)
    {
        var state = slot.State;
        var current = state.Current;
        var left = current.NotAfter - now;
        w.WriteStartObject();
        w.WriteString("listener", listener.Name);
        w.WriteString("name", slot.Source.Name);
        w.WriteString("state", state.LastError is not null ? "error" : left <= TimeSpan.Zero ? "expired" : left < TlsCompiler.ExpiryWarning ? "expiring" : "ok");
        w.WriteBoolean("default", ReferenceEquals(listener.Table.Default, current));
        w.WriteString("subject", current.Subject);
        WriteArray(w, "hosts", current.Hosts);
        WriteArray(w, "dnsNames", current.DnsNames);
        WriteArray(w, "ipAddresses", current.IpAddresses);
        w.WriteString("notBefore", current.NotBefore);
        w.WriteString("notAfter", current.NotAfter);
        w.WriteNumber("daysToExpiry", CertificateStore.DaysToExpiry(current, now));
        w.WriteString("fingerprintSha256", current.Fingerprint);
        WriteArray(w, "files", slot.Source.Files);
        w.WriteString("loadedAt", current.LoadedAt);
        WriteLastError(w, state.LastError, state.LastErrorAt);
        w.WriteEndObject();
    }

    private static void WriteClientCa(Utf8JsonWriter w, ListenerCertificates listener, ClientCaSlot slot, DateTimeOffset now)
    {
        var validator = slot.Validator;
        var bundle = validator.Bundle;
        w.WriteStartObject();
        w.WriteString("listener", listener.Name);
        w.WriteString("mode", validator.Policy.Mode.ToString().ToLowerInvariant());
        w.WriteString("revocation", validator.Policy.Revocation.ToString().ToLowerInvariant());
        w.WriteString("state", slot.LastError is not null ? "error" : "ok");
        w.WriteString("file", slot.File);
        w.WriteStartArray("certificates");
        foreach (var ca in bundle.Certificates)
        {
            w.WriteStartObject();
            w.WriteString("subject", ca.Subject);
            w.WriteString("notAfter", ca.NotAfter.ToUniversalTime());
            w.WriteNumber("daysToExpiry", (int)Math.Floor((ca.NotAfter.ToUniversalTime() - now).TotalDays));
            w.WriteString("fingerprintSha256", ca.GetCertHashString(HashAlgorithmName.SHA256));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteString("loadedAt", bundle.LoadedAt);
        WriteLastError(w, slot.LastError, slot.LastErrorAt);
        w.WriteEndObject();
    }

    private static void WriteLastError(Utf8JsonWriter w, string? error, DateTimeOffset? at)
    {
        if (error is null)
        {
            w.WriteNull("lastError");
            return;
        }

        w.WriteString("lastError", error);
        w.WriteString("lastErrorAt", at!.Value);
    }

    private static void WriteArray(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var value in values) w.WriteStringValue(value);
        w.WriteEndArray();
    }
}
