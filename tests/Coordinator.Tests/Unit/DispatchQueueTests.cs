using Coordinator.Grains;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;

namespace Coordinator.Tests.Unit;

/// <summary>
/// The dispatcher's memory without the grain or the database: the spec's matching rule on sets and parked queues,
/// fetch order across a poll's sets, which parked poll a job goes to, the bounded head and its refills (including the
/// changes made while a read is in flight), and the jobs being claimed.
/// </summary>
public sealed class DispatchQueueTests
{
    private const string Family = "llama3";
    private const string Small = "llama3:8b";
    private const string Large = "llama3:70b";

    private static QueuedJob Exact(long id, string model, int priority = 0, long accountId = 1) =>
        new(id, model, ModelNames.FamilyOf(model), ModelMatch.Exact, priority, accountId);

    private static QueuedJob OfFamily(long id, string model, int priority = 0, long accountId = 1) =>
        new(id, model, ModelNames.FamilyOf(model), ModelMatch.Family, priority, accountId);

    private static QueuedJob OfAny(long id, int priority = 0) => new(id, null, null, ModelMatch.Any, priority, 1);

    private static Capabilities Models(params string[] models) => new(models, [], false);

    private static Capabilities Families(params string[] families) => new([], families, false);

    private static Capabilities CatchAll() => new([], [], true);

    /// <summary>Reads a set as the grain does, with these rows as what the table answered.</summary>
    private static void Load(DispatchQueue queue, JobSet set, params QueuedJob[] rows)
    {
        var (_, limit) = queue.BeginLoad(set);
        queue.EndLoad(set, rows, limit);
    }

    /// <summary>The sets a poll with these capabilities uses, each read and found empty: jobs added from now on are held.</summary>
    private static JobSet[] EmptySets(DispatchQueue queue, Capabilities capabilities)
    {
        var (_, sets) = queue.Resolve(capabilities);
        foreach (var set in sets) Load(queue, set);
        return sets;
    }

    private static Poll NewPoll(DispatchQueue queue, Capabilities capabilities)
    {
        var (keys, sets) = queue.Resolve(capabilities);
        var ticket = new PollTicket(Guid.NewGuid(), 1, capabilities, TimeSpan.FromSeconds(30), null);
        return new Poll(ticket, keys, sets, mayPark: true);
    }

    private static Poll Parked(DispatchQueue queue, Capabilities capabilities)
    {
        var poll = NewPoll(queue, capabilities);
        queue.Park(poll);
        return poll;
    }

    private static long[] Held(JobSet set) => set.Entries.Select(job => job.Id).ToArray();

    [Fact]
    public void AnExactJob_IsHeldOnlyForAPollDeclaringItsModel()
    {
        var queue = new DispatchQueue(Family, 100);
        var small = EmptySets(queue, Models(Small));
        var large = EmptySets(queue, Models(Large));
        var family = EmptySets(queue, Families(Family));

        queue.Add(Exact(1, Small));

        Assert.Equal(1, DispatchQueue.Best(small)?.Id);
        Assert.Null(DispatchQueue.Best(large));
        Assert.Null(DispatchQueue.Best(family));
    }

    [Fact]
    public void AnExactJob_GoesOnlyToAPollParkedOnItsModel()
    {
        var queue = new DispatchQueue(Family, 100);
        Parked(queue, Families(Family));
        Parked(queue, Models(Large));
        var keys = DispatchQueue.KeysOf(ModelMatch.Exact, Small, Family);

        Assert.Null(queue.TakePollFor(keys, _ => true));
        var small = Parked(queue, Models(Small));
        Assert.Same(small, queue.TakePollFor(keys, _ => true));
    }

    [Fact]
    public void AFamilyJob_IsHeldForItsModelAndForItsFamily_NotForAnotherModelOfTheFamily()
    {
        var queue = new DispatchQueue(Family, 100);
        var small = EmptySets(queue, Models(Small));
        var large = EmptySets(queue, Models(Large));
        var family = EmptySets(queue, Families(Family));

        queue.Add(OfFamily(1, Small));

        Assert.Equal(1, DispatchQueue.Best(small)?.Id);
        Assert.Equal(1, DispatchQueue.Best(family)?.Id);
        Assert.Null(DispatchQueue.Best(large));
        Assert.Equal(1, queue.KnownCount);
    }

    [Fact]
    public void AFamilyJob_GoesToAPollParkedOnItsModelOrOnItsFamily()
    {
        var queue = new DispatchQueue(Family, 100);
        Parked(queue, Models(Large));
        var keys = DispatchQueue.KeysOf(ModelMatch.Family, Small, Family);
        var onFamily = Parked(queue, Families(Family));
        var onModel = Parked(queue, Models(Small));

        Assert.Same(onFamily, queue.TakePollFor(keys, _ => true));
        Assert.Same(onModel, queue.TakePollFor(keys, _ => true));
        Assert.Null(queue.TakePollFor(keys, _ => true));
        Assert.Equal(1, queue.ParkedCount);
    }

    [Fact]
    public void CatchAllWork_IsOnlyForCatchAllPolls_AtTheCatchAllDispatcher()
    {
        var any = new DispatchQueue(DispatchKeys.Any, 100);
        var family = new DispatchQueue(Family, 100);

        // A catch-all poll at a family's dispatcher waits only on what it declares; at the catch-all one, only on "any".
        Assert.Empty(family.Resolve(CatchAll()).Sets);
        Assert.Single(family.Resolve(new Capabilities([Small], [], true)).Sets);
        Assert.Empty(any.Resolve(Models(Small)).Sets);
        Assert.Empty(any.Resolve(Families(Family)).Sets);

        var sets = EmptySets(any, CatchAll());
        any.Add(OfAny(1));
        Assert.Equal(1, DispatchQueue.Best(sets)?.Id);
        var poll = Parked(any, CatchAll());
        Assert.Same(poll, any.TakePollFor(DispatchQueue.KeysOf(ModelMatch.Any, null, null), _ => true));
    }

    [Fact]
    public void APollWithSeveralSets_TakesTheHighestPriorityAcrossThem_ThenTheOldest()
    {
        var queue = new DispatchQueue(Family, 100);
        var sets = EmptySets(queue, new Capabilities([Small], [Family], false));

        queue.Add(OfFamily(20, Large));      // family set only
        queue.Add(Exact(10, Small));         // model set only
        Assert.Equal(10, DispatchQueue.Best(sets)?.Id);

        queue.Add(OfFamily(30, Large, priority: 3));
        Assert.Equal(30, DispatchQueue.Best(sets)?.Id);

        queue.Add(Exact(40, Small, priority: 3));
        queue.Take(DispatchQueue.Best(sets)!);
        Assert.Equal(40, DispatchQueue.Best(sets)?.Id);
        queue.Take(DispatchQueue.Best(sets)!);
        Assert.Equal(10, DispatchQueue.Best(sets)?.Id);
        queue.Take(DispatchQueue.Best(sets)!);
        Assert.Equal(20, DispatchQueue.Best(sets)?.Id);
    }

    [Fact]
    public void AJob_GoesToTheLongestParkedPoll_WhicheverOfItsQueuesThatPollWaitsIn()
    {
        var queue = new DispatchQueue(Family, 100);
        var onFamily = Parked(queue, Families(Family));
        var onModel = Parked(queue, Models(Small));
        var onBoth = Parked(queue, new Capabilities([Small], [Family], false));
        // The model's queue is searched first, but the family's holds the poll that parked first.
        var keys = DispatchQueue.KeysOf(ModelMatch.Family, Small, Family);

        Assert.Same(onFamily, queue.TakePollFor(keys, _ => true));
        Assert.Same(onModel, queue.TakePollFor(keys, _ => true));
        Assert.Same(onBoth, queue.TakePollFor(keys, _ => true));
        // Taken out of both of its queues at once.
        Assert.Null(queue.TakePollFor(keys, _ => true));
        Assert.Equal(0, queue.ParkedCount);
    }

    [Fact]
    public void APollThatIsNotUsable_IsSkipped_AndStaysParked()
    {
        var queue = new DispatchQueue(Family, 100);
        var stale = Parked(queue, Models(Small));
        var live = Parked(queue, Models(Small));
        var keys = DispatchQueue.KeysOf(ModelMatch.Exact, Small, Family);

        Assert.Same(live, queue.TakePollFor(keys, poll => poll != stale));
        Assert.Equal(PollState.Parked, stale.State);
        Assert.Equal(1, queue.ParkedCount);
    }

    [Fact]
    public void AddingMoreThanTheHead_MakesTheSetPartial_BoundAtItsLastHeldJob()
    {
        var queue = new DispatchQueue(Family, 4);
        var set = EmptySets(queue, Models(Small))[0];

        for (var id = 1; id <= 5; id++) queue.Add(Exact(id, Small));

        Assert.Equal(SetState.Partial, set.State);
        Assert.Equal([1, 2, 3, 4], Held(set));
        Assert.Equal(4, set.Bound?.Id);
        Assert.Equal(4, queue.KnownCount);
    }

    [Fact]
    public void AJobRankingAfterTheBound_IsLeftToTheTable_AndOneRankingBefore_PushesTheLastOut()
    {
        var queue = new DispatchQueue(Family, 4);
        var set = EmptySets(queue, Models(Small))[0];
        for (var id = 1; id <= 5; id++) queue.Add(Exact(id, Small));

        queue.Add(Exact(6, Small));
        Assert.Equal([1, 2, 3, 4], Held(set));

        queue.Add(Exact(7, Small, priority: 9));
        Assert.Equal([7, 1, 2, 3], Held(set));
        Assert.Equal(3, set.Bound?.Id);
        Assert.Equal(4, queue.KnownCount);
    }

    [Fact]
    public void AnUnreadSet_HoldsNothing_AndMustBeReadFirst()
    {
        var queue = new DispatchQueue(Family, 4);
        var (_, sets) = queue.Resolve(Models(Small));

        queue.Add(Exact(1, Small));

        Assert.Empty(sets[0].Entries);
        Assert.Same(sets[0], DispatchQueue.FirstToLoad(sets));
        Assert.Equal(0, queue.KnownCount);
    }

    [Fact]
    public void AFullRead_LeavesThePartialSetBoundAtItsLastRow_AndTheNextReadStartsAfterIt()
    {
        var queue = new DispatchQueue(Family, 3);
        var set = queue.Resolve(Models(Small)).Sets[0];

        Load(queue, set, Exact(1, Small), Exact(2, Small), Exact(3, Small));

        Assert.Equal(SetState.Partial, set.State);
        Assert.Equal(3, set.Bound?.Id);
        var (after, limit) = queue.BeginLoad(set);
        Assert.Equal((3L, 3), (after?.Id ?? 0, limit));
        queue.AbortLoad(set);
    }

    [Fact]
    public void APartialHead_RunsLowBelowAQuarter_NeedsReadingWhenEmpty_AndACompleteSetNeverRunsLow()
    {
        var queue = new DispatchQueue(Family, 8);
        var set = queue.Resolve(Models(Small)).Sets[0];
        Load(queue, set, [.. Enumerable.Range(1, 8).Select(id => Exact(id, Small))]);

        for (var id = 1; id <= 6; id++) queue.Take(set.Entries.Min!);
        Assert.False(queue.RunningLow(set), "2 of 8 is a quarter, not below it");
        queue.Take(set.Entries.Min!);
        Assert.True(queue.RunningLow(set));
        Assert.False(set.NeedsLoad);

        set.Loading = new TaskCompletionSource().Task;
        Assert.False(queue.RunningLow(set), "a read is already in flight");
        set.Loading = null;

        queue.Take(set.Entries.Min!);
        Assert.True(set.NeedsLoad);

        var complete = queue.Resolve(Models(Large)).Sets[0];
        Load(queue, complete, Exact(100, Large));
        Assert.Equal(SetState.Complete, complete.State);
        Assert.False(queue.RunningLow(complete));
    }

    [Fact]
    public void AJobRemovedDuringARead_StaysOut_ThoughTheReadFoundIt()
    {
        var queue = new DispatchQueue(Family, 10);
        var set = queue.Resolve(Models(Small)).Sets[0];

        var (_, limit) = queue.BeginLoad(set);
        Assert.False(queue.Remove(2)); // not held yet: only recorded
        queue.EndLoad(set, [Exact(1, Small), Exact(2, Small), Exact(3, Small)], limit);

        Assert.Equal([1, 3], Held(set));
        Assert.Equal(2, queue.KnownCount);
    }

    [Fact]
    public void AJobAddedDuringARead_PastTheOldBound_GoesInWhenTheNewBoundCoversIt()
    {
        var queue = new DispatchQueue(Family, 3);
        var set = queue.Resolve(Models(Small)).Sets[0];
        Load(queue, set, Exact(1, Small), Exact(2, Small), Exact(3, Small));
        while (set.Entries.Count > 0) queue.Take(set.Entries.Min!);

        var (after, limit) = queue.BeginLoad(set);
        Assert.Equal(3, after?.Id);
        queue.Add(Exact(5, Small)); // after the bound of 3: left to the table, which the read's snapshot predates
        Assert.Empty(set.Entries);
        queue.EndLoad(set, [Exact(4, Small), Exact(6, Small), Exact(7, Small)], limit);

        Assert.Equal(SetState.Partial, set.State);
        Assert.Equal([4, 5, 6], Held(set));
        Assert.Equal(6, set.Bound?.Id);
    }

    [Fact]
    public void AJobAddedDuringARead_PastTheNewBound_StaysInTheTable()
    {
        var queue = new DispatchQueue(Family, 3);
        var set = queue.Resolve(Models(Small)).Sets[0];
        Load(queue, set, Exact(1, Small), Exact(2, Small), Exact(3, Small));
        while (set.Entries.Count > 0) queue.Take(set.Entries.Min!);

        var (_, limit) = queue.BeginLoad(set);
        queue.Add(Exact(9, Small));
        queue.EndLoad(set, [Exact(4, Small), Exact(6, Small), Exact(7, Small)], limit);

        Assert.Equal([4, 6, 7], Held(set));
        Assert.DoesNotContain(9, Held(set));
    }

    [Fact]
    public void AJobAddedDuringARead_ThatCompletesTheSet_GoesIn()
    {
        var queue = new DispatchQueue(Family, 3);
        var set = queue.Resolve(Models(Small)).Sets[0];

        var (_, limit) = queue.BeginLoad(set);
        queue.Add(Exact(5, Small));
        queue.EndLoad(set, [Exact(4, Small)], limit);

        Assert.Equal(SetState.Complete, set.State);
        Assert.Equal([4, 5], Held(set));
    }

    [Fact]
    public void RemovingAnAccount_DropsOnlyItsJobs_FromEverySet()
    {
        var queue = new DispatchQueue(Family, 100);
        var small = EmptySets(queue, Models(Small))[0];
        var family = EmptySets(queue, Families(Family))[0];
        queue.Add(OfFamily(1, Small, accountId: 7));
        queue.Add(Exact(2, Small, accountId: 7));
        queue.Add(Exact(3, Small, accountId: 8));

        Assert.Equal(2, queue.RemoveAccount(7));

        Assert.Equal([3], Held(small));
        Assert.Empty(family.Entries);
        Assert.Equal(1, queue.KnownCount);
        Assert.Equal(0, queue.RemoveAccount(7));
    }

    [Fact]
    public void ATakenJob_LeavesEverySet_AndIsNotAddedBack_UntilItsClaimSettles()
    {
        var queue = new DispatchQueue(Family, 100);
        var small = EmptySets(queue, Models(Small))[0];
        var family = EmptySets(queue, Families(Family))[0];
        var job = OfFamily(1, Small);
        queue.Add(job);

        queue.Take(job);
        Assert.True(queue.IsClaiming(1));
        Assert.Empty(small.Entries);
        Assert.Empty(family.Entries);

        // A notice or a read that comes back with it while the claim is in flight does not queue it again.
        queue.Add(job);
        Load(queue, small, job);
        Assert.Empty(small.Entries);
        Assert.Equal(0, queue.KnownCount);

        queue.Settled(1);
        Assert.False(queue.IsClaiming(1));
        queue.Add(job);
        Assert.Equal([1], Held(small));
        Assert.Equal([1], Held(family));
    }

    [Fact]
    public void AJobWithANewPriority_ReplacesItsOldRank()
    {
        var queue = new DispatchQueue(Family, 100);
        var set = EmptySets(queue, Models(Small))[0];
        queue.Add(Exact(1, Small));
        queue.Add(Exact(2, Small));

        queue.Add(Exact(2, Small, priority: 5));

        Assert.Equal([2, 1], Held(set));
        Assert.Equal(2, queue.KnownCount);
    }

    [Fact]
    public void Reset_ForgetsEverySet_AndHandsBackTheParkedPolls_OldestFirst()
    {
        var queue = new DispatchQueue(Family, 100);
        var set = EmptySets(queue, Models(Small))[0];
        queue.Add(Exact(1, Small));
        var first = Parked(queue, Families(Family));
        var second = Parked(queue, Models(Large));

        var polls = queue.Reset();

        Assert.Equal([first, second], polls);
        Assert.Equal(SetState.Unloaded, set.State);
        Assert.Empty(set.Entries);
        Assert.Equal((0, 0), (queue.KnownCount, queue.ParkedCount));
    }

    [Fact]
    public void TheBackstop_ReadsOnlyCompleteEmptySets_ThatPollsWaitOn_AndThatAreNotBeingRead()
    {
        var queue = new DispatchQueue(Family, 100);
        var waitedOn = EmptySets(queue, Models(Small))[0];
        EmptySets(queue, Models(Large)); // complete and empty, but no poll waits on it
        queue.Resolve(Families(Family)); // never read
        Parked(queue, new Capabilities([Small], [Family], false));

        Assert.Equal([waitedOn], queue.IdleSetsWithPolls());
        waitedOn.Loading = new TaskCompletionSource().Task;
        Assert.Empty(queue.IdleSetsWithPolls());
    }
}
