using Npgsql;

namespace Coordinator.Grains.Lightning.Agent;

/// <summary>
/// The grid account the agent's grid jobs run under, made once by migration 0020 (on the <c>lightning-agent</c> plan, without
/// daily limits). Read once per silo: the row never changes, so callers racing the first read just read it twice.
/// </summary>
public sealed class AgentAccount(NpgsqlDataSource dataSource)
{
    private long _id;

    /// <summary>The account's id.</summary>
    public async Task<long> IdAsync(CancellationToken cancellationToken = default)
    {
        var id = Volatile.Read(ref _id);
        if (id != 0) return id;
        await using var command = dataSource.CreateCommand("SELECT account_id FROM lightning_agent");
        id = await command.ExecuteScalarAsync(cancellationToken) as long?
            ?? throw new InvalidOperationException("The Lightning agent's account is missing (table lightning_agent is empty); migration 0020 creates it.");
        Volatile.Write(ref _id, id);
        return id;
    }
}
