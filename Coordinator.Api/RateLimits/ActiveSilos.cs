using Orleans.Runtime;

namespace Coordinator.Api.RateLimits;

/// <summary>
/// How many silos are active, as this silo's membership view has it (Orleans updates that view on every membership
/// table read, <c>Cluster:TableRefreshTimeout</c>, and at once on gossip when a silo joins or dies), and each silo's share
/// of a cluster-wide limit.
/// </summary>
public sealed class ActiveSilos(IClusterMembershipService membership)
{
    private sealed record Counted(MembershipVersion Version, int Count);

    private volatile Counted _counted = new(MembershipVersion.MinValue, 1);

    /// <summary>Active silos, this one included (at least 1).</summary>
    public int Count
    {
        get
        {
            var snapshot = membership.CurrentSnapshot;
            var counted = _counted;
            if (counted.Version == snapshot.Version) return counted.Count;
            var count = Math.Max(1, snapshot.Members.Values.Count(member => member.Status == SiloStatus.Active));
            _counted = new Counted(snapshot.Version, count);
            return count;
        }
    }

    /// <summary>
    /// This silo's share of <paramref name="limit"/>: the limit divided by the active silos, rounded down so that the
    /// shares never add up to more than the limit, but at least 1.
    /// </summary>
    public int ShareOf(int limit) => Math.Max(1, limit / Count);
}
