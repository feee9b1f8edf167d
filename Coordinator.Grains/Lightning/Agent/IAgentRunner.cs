using Coordinator.Grains.Jobs;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>
/// Runs the agent's work on the grid: grid jobs under the grid's own agent account (no limits), submitted once per
/// idempotency key, so that two silos advancing the same Lightning job submit one grid job between them.
/// </summary>
public interface IAgentRunner
{
    /// <summary>Submits a grid job on <paramref name="model"/> with <paramref name="prompt"/> (or answers the one the key already made) and answers its id.</summary>
    Task<long> SubmitAsync(string model, string prompt, string idempotencyKey, CancellationToken cancellationToken = default);

    /// <summary>
    /// The grid job as it is now; a job that no worker has taken within <see cref="AgentOptions.JobTimeoutSeconds"/> of its
    /// submission is cancelled first, and answered cancelled.
    /// </summary>
    Task<JobRow> GetAsync(long gridJobId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Waits until the grid job has ended (completed, failed or cancelled) and answers it; one that no worker takes within
    /// <see cref="AgentOptions.JobTimeoutSeconds"/> of its submission is cancelled then.
    /// </summary>
    Task<JobRow> WaitAsync(long gridJobId, CancellationToken cancellationToken = default);
}
