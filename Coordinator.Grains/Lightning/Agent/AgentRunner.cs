using System.Security.Cryptography;
using System.Text;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Microsoft.Extensions.Options;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>
/// <see cref="IAgentRunner"/> on the grid: jobs of the <see cref="AgentAccount"/>, submitted through their family's
/// dispatcher with an idempotency key (the same key and request answer the first job, on any silo), watched from the
/// start so that their end reaches their grain. The grid's own timeout only runs once a worker has claimed a job, so the
/// runner gives a job no worker takes <see cref="AgentOptions.JobTimeoutSeconds"/> from its submission and then cancels
/// it: a job read after that (<see cref="GetAsync"/>) or waited for (<see cref="WaitAsync"/>) comes back cancelled.
/// </summary>
public sealed class AgentRunner(
    IGrainFactory grains, Dispatchers dispatchers, JobStore jobs, AgentAccount account, TimeProvider time, IOptions<AgentOptions> options) : IAgentRunner
{
    /// <summary>The tag of the agent's grid jobs, so that they can be told apart in the jobs table.</summary>
    public const string Tag = "lightning-agent";

    public async Task<long> SubmitAsync(string model, string prompt, string idempotencyKey, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(model);
        ArgumentNullException.ThrowIfNull(prompt);
        if (idempotencyKey.Length is 0 or > IdempotencyKey.MaxLength || idempotencyKey.Any(c => c is < ' ' or > '~'))
        {
            throw new ArgumentException($"an idempotency key is 1 to {IdempotencyKey.MaxLength} printable ASCII characters", nameof(idempotencyKey));
        }
        var accountId = await account.IdAsync(cancellationToken);
        var job = new NewJob(model, ModelMatchOf(model), prompt, null, options.Value.JobTimeoutSeconds, Tag, null)
        {
            Idempotency = new IdempotencyKey(idempotencyKey, RequestHash(model, prompt)),
            Watched = true,
        };
        var submitted = await dispatchers.Of(job.DispatcherKey).SubmitAsync(accountId, job);
        if (submitted.KeyReused) throw new IdempotencyKeyReusedException($"The agent's idempotency key '{idempotencyKey}' was used with another model or prompt.");
        return submitted.Row!.Id;
    }

    public async Task<JobRow> GetAsync(long gridJobId, CancellationToken cancellationToken = default)
    {
        var accountId = await account.IdAsync(cancellationToken);
        var job = await ReadAsync(accountId, gridJobId, cancellationToken);
        return job.Status == JobStatus.Pending && time.GetUtcNow() >= DeadlineOf(job) ? await CancelIfPendingAsync(accountId, job, cancellationToken) : job;
    }

    public async Task<JobRow> WaitAsync(long gridJobId, CancellationToken cancellationToken = default)
    {
        var job = await GetAsync(gridJobId, cancellationToken);
        if (IsEnded(job)) return job;
        var accountId = job.AccountId;
        using var waiting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var deadline = CancelAtDeadlineAsync(accountId, job, waiting.Token);
        try
        {
            var grain = grains.GetGrain<IJobGrain>(gridJobId);
            var (generation, offset) = (0, 0);
            while (true)
            {
                StreamSlice slice;
                try
                {
                    // Answers when the job ends (its end is told to its grain: it was submitted watched), or after a while with nothing.
                    slice = await grain.ReadStreamAsync(accountId, generation, offset, wait: true).WaitAsync(cancellationToken);
                }
                catch (TimeoutException)
                {
                    continue;
                }
                if (slice.Final is { } final) return final;
                if (slice.NotFound) throw new InvalidOperationException($"Grid job {gridJobId} is not a job of the Lightning agent.");
                (generation, offset) = (slice.Generation, slice.Offset);
            }
        }
        finally
        {
            await waiting.CancelAsync();
            await deadline;
        }
    }

    /// <summary>Whether a grid job has ended: completed, failed or cancelled.</summary>
    public static bool IsEnded(JobRow job) => job.Status is JobStatus.Completed or JobStatus.Failed or JobStatus.Cancelled;

    /// <summary>When a job that no worker has taken is given up.</summary>
    public DateTimeOffset DeadlineOf(JobRow job) =>
        new DateTimeOffset(DateTime.SpecifyKind(job.CreatedAt, DateTimeKind.Utc)).AddSeconds(options.Value.JobTimeoutSeconds);

    /// <summary>The front door's family rule: a model named with a tag (<c>llama3:8b</c>) is served exactly, one without by its family.</summary>
    public static string ModelMatchOf(string model) => model.Contains(':', StringComparison.Ordinal) ? ModelMatch.Exact : ModelMatch.Family;

    private async Task CancelAtDeadlineAsync(long accountId, JobRow job, CancellationToken cancellationToken)
    {
        var wait = DeadlineOf(job) - time.GetUtcNow();
        try
        {
            if (wait > TimeSpan.Zero) await Task.Delay(wait, time, cancellationToken);
            // The job's grain hears of the cancellation and answers the waiting read with the cancelled job.
            await CancelIfPendingAsync(accountId, await ReadAsync(accountId, job.Id, cancellationToken), cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task<JobRow> CancelIfPendingAsync(long accountId, JobRow job, CancellationToken cancellationToken)
    {
        if (job.Status != JobStatus.Pending) return job;
        var cancelled = await grains.GetGrain<IJobGrain>(job.Id).CancelAsync(accountId);
        // Not cancelled: a worker claimed it meanwhile, and it runs on under the grid's own timeout.
        return cancelled.Value ?? await ReadAsync(accountId, job.Id, cancellationToken);
    }

    private async Task<JobRow> ReadAsync(long accountId, long gridJobId, CancellationToken cancellationToken) =>
        await jobs.GetAsync(accountId, gridJobId, cancellationToken)
        ?? throw new InvalidOperationException($"Grid job {gridJobId} is not a job of the Lightning agent.");

    private static byte[] RequestHash(string model, string prompt) =>
        SHA256.HashData(Encoding.UTF8.GetBytes(model + "\n" + prompt));
}
