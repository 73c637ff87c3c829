namespace Portcullis.State;

internal enum StoreState
{
    Up,
    Down,
}

/// <summary>A shared store's health for /readyz and the admin API.</summary>
internal sealed record StoreHealth(string Name, StoreState State, DateTimeOffset Since, string? LastError);
