using Coordinator.Grains.Jobs;

namespace Coordinator.Grains.Dispatch;

/// <summary>
/// The buckets parked polls wait under. A job can be served by polls parked under any of its keys:
/// <c>m:&lt;model&gt;</c> (a worker's models[]), <c>f:&lt;family&gt;</c> (families[]) and <c>any</c> (catch_all).
/// </summary>
public static class WakeKeys
{
    public const string Any = "any";

    public static string ForModel(string model) => "m:" + model;

    public static string ForFamily(string family) => "f:" + family;

    /// <summary>The keys under which polls that can serve this job are parked (the spec's matching rule).</summary>
    public static string[] ForJob(string modelMatch, string? model, string? family) => modelMatch switch
    {
        ModelMatch.Exact => [ForModel(model!)],
        ModelMatch.Family => [ForModel(model!), ForFamily(family!)],
        _ => [Any],
    };

    /// <summary>The dispatcher of catch-all work; no model family can be called this (model names start with a letter or digit).</summary>
    public const string AnyFamily = "*";

    /// <summary>
    /// The model family a key belongs to, which names its <see cref="IDispatcherGrain"/>: <c>m:llama3:8b</c> and
    /// <c>f:llama3</c> → <c>llama3</c>, <c>any</c> → <see cref="AnyFamily"/>. All the keys of one job share a family.
    /// </summary>
    public static string FamilyOf(string key) => key switch
    {
        Any => AnyFamily,
        _ when key.StartsWith("m:", StringComparison.Ordinal) => ModelNames.FamilyOf(key[2..]),
        _ => key[2..],
    };

    /// <summary>The keys a poll with these capabilities parks under.</summary>
    public static string[] ForCapabilities(Capabilities capabilities)
    {
        var keys = new List<string>(capabilities.Models.Count + capabilities.Families.Count + 1);
        keys.AddRange(capabilities.Models.Select(ForModel));
        keys.AddRange(capabilities.Families.Select(ForFamily));
        if (capabilities.CatchAll) keys.Add(Any);
        return keys.Distinct(StringComparer.Ordinal).ToArray();
    }
}
