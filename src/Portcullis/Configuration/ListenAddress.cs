using System.Globalization;
using System.Net;

namespace Portcullis.Configuration;

/// <summary>A parsed listener address: 127.0.0.1:8080, [::1]:8080, *:8080, localhost:8080.</summary>
internal readonly record struct ListenAddress(IPAddress? Ip, bool IsLocalhost, int Port)
{
    /// <summary>True for *:port, 0.0.0.0:port and [::]:port.</summary>
    public bool IsAny => !IsLocalhost && (Ip is null || Ip.Equals(IPAddress.Any) || Ip.Equals(IPAddress.IPv6Any));

    public bool IsLoopback => IsLocalhost || (Ip is not null && IPAddress.IsLoopback(Ip));

    public static bool TryParse(string text, out ListenAddress address, out string? error)
    {
        address = default;
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
        {
            error = $"'{text}' is not host:port";
            return false;
        }

        var host = text[..colon];
        var portText = text[(colon + 1)..];
        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port < 1 || port > 65535)
        {
            error = $"port '{portText}' is out of range";
            return false;
        }

        if (host is "*" or "+")
        {
            address = new ListenAddress(null, false, port);
        }
        else if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            address = new ListenAddress(null, true, port);
        }
        else
        {
            var trimmed = host.StartsWith('[') && host.EndsWith(']') ? host[1..^1] : host;
            if (!IPAddress.TryParse(trimmed, out var ip) || (trimmed.Contains(':') && !host.StartsWith('[')))
            {
                error = $"'{host}' is not an IP address, '*' or 'localhost' (write IPv6 as [::1])";
                return false;
            }

            address = new ListenAddress(ip, false, port);
        }

        error = null;
        return true;
    }

    /// <summary>Two addresses conflict when binding both would fail or steal each other's traffic.</summary>
    public bool ConflictsWith(ListenAddress other) =>
        Port == other.Port && (IsAny || other.IsAny || IsLocalhost || other.IsLocalhost || Equals(Ip, other.Ip));

    public override string ToString() =>
        (IsLocalhost ? "localhost" : Ip is null ? "*" : Ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{Ip}]" : Ip.ToString())
        + ":" + Port.ToString(CultureInfo.InvariantCulture);
}
