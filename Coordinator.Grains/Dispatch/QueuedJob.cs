using Coordinator.Grains.Jobs;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// A dispatchable job as a dispatcher ranks and matches it: no prompt, which stays in the table until the claim.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record QueuedJob(
    [property: Id(0)] long Id,
    [property: Id(1)] string? Model,
    [property: Id(2)] string? Family,
    [property: Id(3)] string ModelMatch,
    [property: Id(4)] int Priority,
    [property: Id(5)] long AccountId)
{
    /// <summary>A job as its dispatcher ranks it.</summary>
    public static QueuedJob Of(JobRow row) => new(row.Id, row.Model, row.Family, row.ModelMatch, row.Priority, row.AccountId);

    /// <summary>The dispatcher that queues this job (see <see cref="DispatchKeys.Of"/>).</summary>
    public string DispatcherKey => DispatchKeys.Of(ModelMatch, Family);

    /// <summary>Fetch order: highest priority first, then oldest (ids grow with time).</summary>
    public static IComparer<QueuedJob> Rank { get; } = Comparer<QueuedJob>.Create(static (a, b) =>
    {
        var byPriority = b.Priority.CompareTo(a.Priority);
        return byPriority != 0 ? byPriority : a.Id.CompareTo(b.Id);
    });
}

/// <summary>
/// Which dispatcher grain serves what. A dispatcher is keyed by model family; catch-all work has one of its own,
/// <see cref="Any"/>, a name no family can have (model names start with a letter or digit).
/// </summary>
public static class DispatchKeys
{
    public const string Any = "*";

    /// <summary>The dispatcher of a job: its family, or <see cref="Any"/> for a job any worker may take.</summary>
    public static string Of(string modelMatch, string? family) => modelMatch == ModelMatch.Any ? Any : family!;

    /// <summary>
    /// The dispatchers a poll with these capabilities parks on: the family of each declared model, each declared family,
    /// and <see cref="Any"/> for a catch-all worker. In a stable order, so that a worker's polls name them alike.
    /// </summary>
    public static IReadOnlyList<string> For(Capabilities capabilities)
    {
        var keys = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var model in capabilities.Models) keys.Add(ModelNames.FamilyOf(model));
        foreach (var family in capabilities.Families) keys.Add(family);
        var list = keys.ToList();
        if (capabilities.CatchAll) list.Add(Any);
        return list;
    }
}
