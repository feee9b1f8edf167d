namespace Coordinator.Grains.Lightning.Agent;

/// <summary>
/// One pay-per-job job (key: its id). Reads of the job go through it so that the cluster advances each job one call at
/// a time: concurrent reads on any silos queue here instead of each checking invoices and submitting grid jobs.
/// </summary>
public interface ILightningJobGrain : IGrainWithStringKey
{
    /// <summary>Advances the job as far as its invoices and grid jobs allow now and answers it; null when there is no such job.</summary>
    Task<AgentJobRow?> AdvanceAsync();
}

/// <summary>Holds nothing: the row is the state, and <see cref="AgentJobMachine"/> moves it.</summary>
[CollectionAgeLimit(Minutes = 2)]
public sealed class LightningJobGrain(AgentJobMachine machine) : Grain, ILightningJobGrain
{
    public Task<AgentJobRow?> AdvanceAsync() => machine.AdvanceAsync(this.GetPrimaryKeyString());
}
