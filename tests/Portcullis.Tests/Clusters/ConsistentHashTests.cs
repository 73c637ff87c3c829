using System.IO.Hashing;
using System.Text;
using Portcullis.Clusters;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Tests.Clusters;

/// <summary>The hash ring of loadBalancing: consistentHash: key movement, spread, bounded loads, validation.</summary>
public sealed class ConsistentHashTests() : ConfigBuildTestBase("portcullis-chash-")
{
    private static List<DestinationState> Destinations(int count) => [.. Enumerable.Range(1, count).Select(i => new DestinationState($"d{i}"))];

    private static ulong Hash(string key) => XxHash3.HashToUInt64(Encoding.UTF8.GetBytes(key));

    private static Dictionary<string, string> Place(HashRing ring, IReadOnlyList<DestinationState> available, int keys, double factor = 0) =>
        Enumerable.Range(0, keys).ToDictionary(i => $"user-{i}", i => ring.Pick(Hash($"user-{i}"), available, factor)!.DestinationId);

    [Fact]
    public void Adding_a_destination_to_ten_moves_about_one_eleventh_of_the_keys_and_only_to_the_new_one()
    {
        var ten = Destinations(10);
        var eleven = ten.Append(new DestinationState("d11")).ToList();
        var before = Place(new HashRing(ten), ten, 20_000);
        var after = Place(new HashRing(eleven), eleven, 20_000);
        var moved = before.Where(p => after[p.Key] != p.Value).ToList();
        Assert.InRange(moved.Count / 20_000.0, 0.06, 0.125); // 1/11 = 0.091
        Assert.All(moved, p => Assert.Equal("d11", after[p.Key]));
    }

    [Fact]
    public void A_destination_that_goes_away_gives_up_only_its_own_keys()
    {
        var all = Destinations(8);
        var ring = new HashRing(all);
        var before = Place(ring, all, 10_000);
        var without = all.Where(d => d.DestinationId != "d3").ToList(); // unhealthy or drained: not available
        var after = Place(ring, without, 10_000);
        Assert.All(before.Where(p => p.Value != "d3"), p => Assert.Equal(p.Value, after[p.Key]));
        Assert.DoesNotContain("d3", after.Values);
    }

    [Fact]
    public void Keys_spread_evenly_and_two_rings_of_the_same_names_agree()
    {
        var first = Destinations(10);
        var placed = Place(new HashRing(first), first, 50_000);
        foreach (var count in placed.Values.GroupBy(v => v).Select(g => g.Count())) Assert.InRange(count, 5_000 * 0.75, 5_000 * 1.25);
        var second = Destinations(10); // another instance: other objects, same names
        Assert.Equal(placed, Place(new HashRing(second), second, 50_000));
    }

    [Fact]
    public void A_destination_above_its_bounded_share_is_passed_over_for_the_next_one_on_the_ring()
    {
        var all = Destinations(4);
        var ring = new HashRing(all);
        var hash = Hash("hot-key");
        var owner = ring.Pick(hash, all, 1.25)!;
        owner.ConcurrentRequestCount = 10; // the others 0: average (10 + 1) / 4, bound ceil(1.25 × 2.75) = 4
        var spilled = ring.Pick(hash, all, 1.25)!;
        Assert.NotSame(owner, spilled);
        Assert.Same(owner, ring.Pick(hash, all, 0)); // no bound: pure consistent hashing
        foreach (var destination in all) destination.ConcurrentRequestCount = 2; // average (8 + 1) / 4, bound 3
        Assert.Same(owner, ring.Pick(hash, all, 1.25)); // below the bound again: back home
    }

    [Fact]
    public void Bad_consistent_hash_and_affinity_settings_are_reported_at_their_position()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - { name: a, match: { pathPrefix: /a }, cluster: a }
            clusters:
              a:
                destinations: [http://127.0.0.1:1]
                loadBalancing: consistentHash
                consistentHash: { key: "header:", balanceFactor: 0.5 }
                affinity: { cookie: "bad cookie", maxAge: 0s }
              b:
                destinations: [http://127.0.0.1:1]
                loadBalancing: consistentHash
              c:
                destinations: [http://127.0.0.1:1]
                consistentHash: { key: consumer }
            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "unknown request source"), 8, 28);
        AssertAt(ErrorContaining(result, "balanceFactor must be at least 1"), 8, 54);
        AssertAt(ErrorContaining(result, "is not a valid cookie name"), 9, 25);
        AssertAt(ErrorContaining(result, "maxAge must be greater than zero"), 9, 47);
        AssertAt(ErrorContaining(result, "needs consistentHash.key"), 12, 20);
        AssertAt(ErrorContaining(result, "loadBalancing is not consistentHash"), 15, 21);
    }
}
