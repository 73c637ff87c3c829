using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Portcullis.Files;

namespace Portcullis.Tls;

/// <summary>One listener's certificates and the SNI table built from them.</summary>
internal sealed class ListenerCertificates
{
    private volatile SniTable _table = null!;

    public ListenerCertificates(string name, ListenerTls settings, CertificateSlot[] slots, ClientCaSlot? clientCa = null)
    {
        Name = name;
        Settings = settings;
        Slots = slots;
        ClientCa = clientCa;
        Rebuild();
    }

    /// <summary>The client CA bundle and its validator, when the listener asks for client certificates.</summary>
    public ClientCaSlot? ClientCa { get; }

    public string Name { get; }

    public ListenerTls Settings { get; }

    public CertificateSlot[] Slots { get; }

    public SniTable Table => _table;

    /// <summary>A fresh options object per handshake (Kestrel sets ALPN on it); the certificate context is shared.</summary>
    public SslServerAuthenticationOptions OptionsFor(string? serverName, ConnectionContext? connection = null)
    {
        var table = _table;
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = table.Select(serverName).Context,
            EnabledSslProtocols = table.Protocols,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            ClientCertificateRequired = false,
        };
        if (connection is not null) ClientCa?.Validator.Apply(options, connection);
        return options;
    }

    internal void Rebuild()
    {
        var current = Slots.Select(s => s.State.Current).ToArray();
        _table = new SniTable(current, current[Settings.DefaultIndex], Settings.Protocols);
    }
}

/// <summary>One configured certificate: what serves now and how the last reload went.</summary>
internal sealed class CertificateSlot(string listener, CertificateSource source, SlotState state, FileStamp[] stamps)
{
    private volatile SlotState _state = state;

    public string Listener { get; } = listener;

    public CertificateSource Source { get; } = source;

    public SlotState State
    {
        get => _state;
        set => _state = value;
    }

    /// <summary>File versions of the last load attempt (changed under the store's refresh lock only).</summary>
    public FileStamp[] Stamps { get; set; } = stamps;

    public DateTimeOffset? LastExpiryWarning { get; set; }
}

internal sealed record SlotState(LoadedCertificate Current, string? LastError, DateTimeOffset? LastErrorAt);

/// <summary>A listener's client CA bundle file: the validator that uses it and how the last reload went.</summary>
internal sealed class ClientCaSlot(string listener, ClientCertificateValidator validator, FileStamp stamp)
{
    private volatile string? _lastError;

    public string Listener { get; } = listener;

    public ClientCertificateValidator Validator { get; } = validator;

    public string File => Validator.Policy.CaFile;

    /// <summary>File version of the last load attempt (changed under the store's refresh lock only).</summary>
    public FileStamp Stamp { get; set; } = stamp;

    public string? LastError
    {
        get => _lastError;
        set => _lastError = value;
    }

    public DateTimeOffset? LastErrorAt { get; set; }
}
