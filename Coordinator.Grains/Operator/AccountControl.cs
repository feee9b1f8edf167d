using Coordinator.Grains.Accounts;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Dapper;
using Npgsql;

namespace Coordinator.Grains.Operator;

/// <summary>An account as an operator sees it.</summary>
public sealed class AccountStatus
{
    public long Id { get; init; }
    public string Name { get; init; } = "";
    public bool Disabled { get; init; }
    public DateTime? DisabledAt { get; init; }
    public string? DisabledReason { get; init; }
    public DateTime CreatedAt { get; init; }
}

/// <summary>What disabling an account did.</summary>
public sealed record DisableOutcome(AccountStatus Account, int CancelledJobs);

/// <summary>
/// The operator's switch on an account. Disabling sets <c>accounts.disabled</c>, which every front door checks when it
/// resolves a key (so the account's client keys and its workers' keys are refused), and cancels the account's pending
/// jobs as <c>DELETE /jobs/cancel_all</c> would (nothing is charged for a job before it is claimed, so there is nothing
/// to refund). Claimed and running jobs of the account run to their end on the workers that hold them. Enabling clears
/// the flag; cancelled jobs stay cancelled. This node forgets the account's cached keys at once; the other nodes within
/// <see cref="AccountOptions.KeyCacheDuration"/>.
/// </summary>
public sealed class AccountControl(NpgsqlDataSource dataSource, TimeProvider time, AccountStore accounts, JobStore jobs, Dispatchers dispatchers, IGrainFactory grains)
{
    /// <summary>The error a job cancelled by a disable carries.</summary>
    public const string CancelReason = "cancelled: the account was disabled by the operator";

    private const string Columns = "id, name, disabled, disabled_at, disabled_reason, created_at";

    public async Task<AccountStatus?> GetAsync(long accountId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await connection.QuerySingleOrDefaultAsync<AccountStatus>(new CommandDefinition(
            $"SELECT {Columns} FROM accounts WHERE id = @accountId", new { accountId }, cancellationToken: cancellationToken));
    }

    /// <summary>
    /// Disables the account and cancels its pending jobs; null when there is no such account. Disabling a disabled
    /// account keeps its first disable time and cancels whatever is pending again (jobs a node with a stale key cache
    /// accepted in the meantime).
    /// </summary>
    public async Task<DisableOutcome?> DisableAsync(long accountId, string? reason, CancellationToken cancellationToken = default)
    {
        AccountStatus? account;
        await using (var connection = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            account = await connection.QuerySingleOrDefaultAsync<AccountStatus>(new CommandDefinition($"""
                UPDATE accounts SET disabled = true,
                    disabled_at = CASE WHEN disabled THEN disabled_at ELSE @now END,
                    disabled_reason = CASE WHEN disabled AND @reason::text IS NULL THEN disabled_reason ELSE @reason END
                WHERE id = @accountId
                RETURNING {Columns}
                """, new { accountId, reason, now = time.GetUtcNow() }, cancellationToken: cancellationToken));
        }
        if (account is null) return null;
        accounts.ForgetAccount(accountId);

        var (cancelled, watched) = await jobs.CancelAllPendingAsync(accountId, CancelReason, cancellationToken);
        await dispatchers.RemoveAsync(cancelled);
        // Their event streams end, as after the client's own cancel_all.
        foreach (var id in watched) await grains.GetGrain<IJobGrain>(id).EndedAsync();
        return new DisableOutcome(account, cancelled.Count);
    }

    /// <summary>Enables the account again; null when there is no such account.</summary>
    public async Task<AccountStatus?> EnableAsync(long accountId, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var account = await connection.QuerySingleOrDefaultAsync<AccountStatus>(new CommandDefinition($"""
            UPDATE accounts SET disabled = false WHERE id = @accountId
            RETURNING {Columns}
            """, new { accountId }, cancellationToken: cancellationToken));
        if (account is not null) accounts.ForgetAccount(accountId);
        return account;
    }
}
