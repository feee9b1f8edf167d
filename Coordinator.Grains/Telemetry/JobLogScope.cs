using System.Collections;
using Microsoft.Extensions.Logging;

namespace Coordinator.Grains.Telemetry;

/// <summary>
/// The logger scope of everything written while handling one job: <c>JobId</c>, which the JSON console formatter writes
/// into each line's <c>Scopes</c> (with <c>Logging:Json=true</c>), beside the trace and span ids of the current activity.
/// Only the id: a job's prompt, output and keys never go into a scope or a line.
/// </summary>
public sealed class JobLogScope(long jobId) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public const string Key = "JobId";

    public long JobId { get; } = jobId;

    public KeyValuePair<string, object?> this[int index] => index == 0 ? new(Key, JobId) : throw new ArgumentOutOfRangeException(nameof(index));

    public int Count => 1;

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        yield return this[0];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => $"{Key}:{JobId}";
}

/// <summary>Every call on a job grain runs in its job's <see cref="JobLogScope"/>, so whatever it logs (its statements included) names the job.</summary>
public sealed class JobLogScopeFilter(ILoggerFactory loggers) : IIncomingGrainCallFilter
{
    private readonly ILogger _logger = loggers.CreateLogger("Coordinator.Grains.Jobs.JobGrain");

    // Other grains' calls pass straight through, without a state machine of their own.
    public Task Invoke(IIncomingGrainCallContext context) =>
        context.TargetContext.GrainInstance is Jobs.JobGrain job ? InvokeInScopeAsync(context, job.GetPrimaryKeyLong()) : context.Invoke();

    private async Task InvokeInScopeAsync(IIncomingGrainCallContext context, long jobId)
    {
        using (_logger.BeginScope(new JobLogScope(jobId))) await context.Invoke();
    }
}
