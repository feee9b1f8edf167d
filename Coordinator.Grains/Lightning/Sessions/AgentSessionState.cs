namespace Coordinator.Grains.Lightning.Sessions;

/// <summary>
/// The states of a session, as the spec's <c>AgentSessionState</c>. <see cref="Expired"/> is never stored: a session that
/// has been paid is expired once it has been idle past its idle timeout, whatever its stored state.
/// </summary>
public enum AgentSessionState
{
    /// <summary>Created; its deposit invoice is unpaid.</summary>
    AwaitingPayment,

    /// <summary>Paid, and its balance is at least the minimum: it takes requests.</summary>
    Active,

    /// <summary>A request left the balance below the minimum; paying a top-up makes it active again.</summary>
    Paused,

    /// <summary>Idle past its idle timeout (24 h): it takes nothing any more.</summary>
    Expired,
}

/// <summary>The spec's spelling of each <see cref="AgentSessionState"/>, in the API and in <c>lightning_sessions.state</c>.</summary>
public static class SessionStates
{
    public const string AwaitingPayment = "awaiting_payment";
    public const string Active = "active";
    public const string Paused = "paused";
    public const string Expired = "expired";

    public static string Name(AgentSessionState state) => state switch
    {
        AgentSessionState.AwaitingPayment => AwaitingPayment,
        AgentSessionState.Active => Active,
        AgentSessionState.Paused => Paused,
        AgentSessionState.Expired => Expired,
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    public static AgentSessionState Parse(string stored) => stored switch
    {
        AwaitingPayment => AgentSessionState.AwaitingPayment,
        Active => AgentSessionState.Active,
        Paused => AgentSessionState.Paused,
        _ => throw new InvalidOperationException($"lightning_sessions holds the unknown state '{stored}'."),
    };
}
