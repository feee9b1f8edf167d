namespace Coordinator.Grains.Lightning.Agent;

/// <summary>
/// Where a pay-per-job job is. It only moves forward, one step per paid invoice or ended grid job:
/// <c>awaiting_eval_payment → evaluating → rejected | awaiting_work_payment → executing → complete</c>, and to
/// <c>failed</c> from <c>evaluating</c> or <c>executing</c> when the grid job fails, times out, or the eval cannot be read.
/// </summary>
public enum AgentJobState
{
    AwaitingEvalPayment,
    Evaluating,
    Rejected,
    AwaitingWorkPayment,
    Executing,
    Complete,
    Failed,
}

/// <summary>The states' names in the spec and in <c>lightning_agent_jobs.state</c>.</summary>
public static class AgentJobStates
{
    private static readonly Dictionary<AgentJobState, string> Names = new()
    {
        [AgentJobState.AwaitingEvalPayment] = "awaiting_eval_payment",
        [AgentJobState.Evaluating] = "evaluating",
        [AgentJobState.Rejected] = "rejected",
        [AgentJobState.AwaitingWorkPayment] = "awaiting_work_payment",
        [AgentJobState.Executing] = "executing",
        [AgentJobState.Complete] = "complete",
        [AgentJobState.Failed] = "failed",
    };

    private static readonly Dictionary<string, AgentJobState> ByName = Names.ToDictionary(p => p.Value, p => p.Key, StringComparer.Ordinal);

    public static string Name(this AgentJobState state) => Names[state];

    public static AgentJobState Parse(string name) =>
        ByName.TryGetValue(name, out var state) ? state : throw new ArgumentOutOfRangeException(nameof(name), name, "not a Lightning agent job state");
}

/// <summary>
/// The refund of a complete job, or of a failed one whose work was paid for. <see cref="Paying"/> is a claim paying it now,
/// or one whose payment's fate the node has not told yet; the API shows it as pending.
/// </summary>
public static class RefundStates
{
    public const string NotApplicable = "not_applicable";
    public const string Pending = "pending";
    public const string Paying = "paying";
    public const string Paid = "paid";
}
