using Coordinator.Grains.Accounting;
using Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Orleans.Runtime;

namespace Coordinator.Tests.Accounting;

/// <summary>
/// The batched counts of an account without limits survive the silo's stop: a count that arrives after the stop began
/// (a result reaching a job on the stopping silo) is no longer sent to a grain but written to the account's row.
/// </summary>
public class QuotaCountingStopTests
{
    [Fact]
    public async Task ACountArrivingWhileTheSiloStops_IsWrittenToTheAccountsRow()
    {
        var late = new LateCount();
        var host = await GridHost.StartAsync(services: services =>
            services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => late.With(sp.GetRequiredService<QuotaCounting>())));
        long accountId;
        string connectionString;
        try
        {
            (accountId, _) = await host.NewAccountOnPlanWithIdAsync(null, null);
            connectionString = host.ConnectionString;
            // The first count goes to the account's grain, which answers that the plan has no limit: from then on this
            // silo adds the account's counts up and sends them in batches.
            await host.Get<QuotaCounting>().CountTokensAsync(accountId, 5);
            late.AccountId = accountId;
        }
        finally
        {
            // A graceful stop: the silo's Active stage stops (the last batch goes out), then LateCount counts 7 more
            // tokens as a later stage stops, when the silo no longer sends counts to grains.
            await host.DisposeAsync();
        }

        Assert.True(late.Counted, "the late count ran during the silo's stop");
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT coalesce(sum(tokens), 0)::bigint FROM quota_usage WHERE account_id = @accountId", connection);
        command.Parameters.AddWithValue("accountId", accountId);
        // 5 written by the account's grain as it deactivated, 7 by the stopping silo's QuotaCounting: each once.
        Assert.Equal(12L, (long)(await command.ExecuteScalarAsync())!);
    }

    /// <summary>Counts 7 tokens for <see cref="AccountId"/> as the silo's stop passes a stage below Active.</summary>
    private sealed class LateCount : ILifecycleParticipant<ISiloLifecycle>
    {
        private QuotaCounting? _counting;

        public long AccountId { get; set; }

        public bool Counted { get; private set; }

        public LateCount With(QuotaCounting counting)
        {
            _counting = counting;
            return this;
        }

        public void Participate(ISiloLifecycle lifecycle) =>
            lifecycle.Subscribe(nameof(LateCount), ServiceLifecycleStage.BecomeActive, _ => Task.CompletedTask, async _ =>
            {
                if (AccountId == 0 || _counting is null) return;
                await _counting.CountTokensAsync(AccountId, 7);
                Counted = true;
            });
    }
}
