using System.Diagnostics;
using System.Diagnostics.Metrics;
using Coordinator.Grains;
using Coordinator.Grains.Accounts;
using Coordinator.Grains.Dispatch;
using Coordinator.Grains.Jobs;
using Coordinator.Grains.Workers;
using Coordinator.Tests.Infrastructure;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using Orleans.TestingHost;

namespace Coordinator.Tests.Cluster;

/// <summary>
/// The dispatcher grain with the real worker grains and the real database, at grain level (no HTTP): a new activation
/// rebuilt from PostgreSQL after its silo is killed serves what the old one held, a poll parked on the dead activation
/// is served afterwards, two activations of one dispatcher racing for a job hand it out once (the claim's row decides),
/// and a poll on one silo gets a job submitted on another at once.
/// </summary>
/// <remarks>
/// <see cref="TestCluster.KillSiloAsync(SiloHandle)"/> on an in-process silo is not a crash (the silo still tells the cluster it is
/// leaving): SiloCrashTests kills a silo process for that. Here it is the way to make an activation go away while the
/// rest of the cluster goes on.
/// </remarks>
public sealed class DispatcherClusterTests(GrainClusterFixture fixture) : IClassFixture<GrainClusterFixture>
{
    private const int Silos = 3;

    private static readonly TimeSpan PollBound = TimeSpan.FromSeconds(20);

    private TestCluster Cluster => fixture.Cluster;

    private IServiceProvider ServicesOf(SiloHandle silo) => Cluster.GetSiloServiceProvider(silo.SiloAddress);

    /// <summary>Grain calls made from inside this silo (a worker grain, placed near its caller, activates there).</summary>
    private IGrainFactory GrainsOf(SiloHandle silo) => ServicesOf(silo).GetRequiredService<IGrainFactory>();

    private IServiceProvider AnySilo => ServicesOf(Cluster.GetActiveSilos().First());

    /// <summary>
    /// Calls from a live silo, as the co-hosted front end makes them. Not the cluster's external client: after a kill it
    /// may still send a call to the dead silo's gateway, and that call fails.
    /// </summary>
    private IGrainFactory Grains => AnySilo.GetRequiredService<IGrainFactory>();

    private static Capabilities Models(params string[] models) => new(models, [], false);

    private static NewJob Job(string model, int priority) => new(model, ModelMatch.Exact, $"priority {priority}", priority, 600, null, null);

    private async Task<long> NewAccountAsync() =>
        (await AnySilo.GetRequiredService<AccountStore>().CreateAccountAsync("dispatcher-cluster")).AccountId;

    /// <summary>A worker registered in the database with one model, as <c>POST /worker/register</c> leaves it.</summary>
    private async Task<long> NewWorkerAsync(long accountId, string model)
    {
        var key = await AnySilo.GetRequiredService<AccountStore>().CreateKeyAsync(accountId, "worker");
        return await AnySilo.GetRequiredService<WorkerStore>().RegisterAsync(accountId, key.Id,
            new WorkerRegistration(ApiClient.Unique("w"), "test", "linux/amd64", [new WorkerModel(model, false)], false));
    }

    /// <summary>The silo that holds a grain's one activation.</summary>
    private async Task<SiloAddress> SiloOfAsync(IAddressable grain)
    {
        var id = grain.GetGrainId();
        var activations = await Grains.GetGrain<IManagementGrain>(0).GetDetailedGrainStatistics();
        var found = activations.Where(activation => activation.GrainId == id).ToList();
        Assert.True(found.Count == 1, $"{id} has {found.Count} activations");
        return found[0].SiloAddress;
    }

    private static Task ParkedAsync(IDispatcherGrain dispatcher, int count = 1) =>
        Eventually.TrueAsync(async () => (await dispatcher.StatsAsync()).ParkedPolls >= count, $"{count} poll(s) park on the dispatcher");

    /// <summary>Kills a silo and waits until every other silo has it as dead.</summary>
    private async Task KillAsync(SiloAddress address)
    {
        await Cluster.KillSiloAsync(Cluster.GetActiveSilos().Single(silo => silo.SiloAddress.Equals(address)));
        var survivors = Cluster.GetActiveSilos().Select(silo => ServicesOf(silo).GetRequiredService<IClusterMembershipService>()).ToList();
        await Eventually.TrueAsync(() => survivors.All(membership => membership.CurrentSnapshot.GetSiloStatus(address) == SiloStatus.Dead),
            $"every silo has {address} as dead");
    }

    /// <summary>Starts silos until the cluster has its three again, for the tests that come after.</summary>
    private async Task RestoreSilosAsync()
    {
        while (Cluster.GetActiveSilos().Count() < Silos) await Cluster.StartAdditionalSiloAsync();
    }

    [Fact]
    public async Task ADispatcherRebuiltFromTheTable_AfterItsSiloIsKilled_ServesEveryJobTheOldOneQueued_InPriorityThenAgeOrder()
    {
        try
        {
            var accountId = await NewAccountAsync();
            var model = ApiClient.Unique();
            var family = ModelNames.FamilyOf(model);
            var dispatcher = Grains.GetGrain<IDispatcherGrain>(family);
            // A look at the model's set reads it (empty), so that the jobs submitted next are held in memory.
            Assert.Null(await dispatcher.PeekAsync(Models(model)));
            var submitted = new List<(long Id, int Priority)>();
            foreach (var priority in new[] { 0, 5, 0, 9, 5, 0 })
            {
                var row = (await dispatcher.SubmitAsync(accountId, Job(model, priority))).Row!;
                Assert.Equal(JobStatus.Pending, row.Status);
                submitted.Add((row.Id, priority));
            }
            Assert.Equal(submitted.Count, (await dispatcher.StatsAsync()).QueuedJobs);
            var expected = submitted.OrderByDescending(job => job.Priority).ThenBy(job => job.Id).Select(job => job.Id).ToList();

            var owner = await SiloOfAsync(dispatcher);
            await KillAsync(owner);

            dispatcher = Grains.GetGrain<IDispatcherGrain>(family);
            var worker = Grains.GetGrain<IWorkerGrain>(await NewWorkerAsync(accountId, model));
            var served = new List<long>();
            foreach (var _ in expected)
            {
                var job = await worker.NextJobAsync(Guid.NewGuid(), Models(model)).WaitAsync(PollBound);
                Assert.True(job is not null, $"the poll after {served.Count} job(s) answered nothing; expected {string.Join(", ", expected)}");
                served.Add(job.Id);
                if (served.Count == 1)
                {
                    // A new activation, which read the rest from the table to serve the first poll.
                    Assert.NotEqual(owner, await SiloOfAsync(dispatcher));
                    Assert.Equal(expected.Count - 1, (await dispatcher.StatsAsync()).QueuedJobs);
                }
            }
            Assert.Equal(expected, served);
        }
        finally
        {
            await RestoreSilosAsync();
        }
    }

    [Fact]
    public async Task APollParkedOnADispatcherWhoseSiloIsKilled_ReceivesAJobSubmittedAfterwards()
    {
        try
        {
            var accountId = await NewAccountAsync();
            var model = ApiClient.Unique();
            var family = ModelNames.FamilyOf(model);
            var dispatcher = Grains.GetGrain<IDispatcherGrain>(family);
            await dispatcher.StatsAsync();
            var owner = await SiloOfAsync(dispatcher);
            // The worker grain lives on a silo that survives: called from inside it, it activates there.
            var survivor = Cluster.GetActiveSilos().First(silo => !silo.SiloAddress.Equals(owner));
            var worker = GrainsOf(survivor).GetGrain<IWorkerGrain>(await NewWorkerAsync(accountId, model));
            var poll = worker.NextJobAsync(Guid.NewGuid(), Models(model));
            await ParkedAsync(dispatcher);
            Assert.Equal(survivor.SiloAddress, await SiloOfAsync(worker));

            await KillAsync(owner);
            dispatcher = GrainsOf(survivor).GetGrain<IDispatcherGrain>(family);
            var id = (await dispatcher.SubmitAsync(accountId, Job(model, 0))).Row!.Id;

            var job = await poll.WaitAsync(PollBound);
            Assert.True(job is not null, "the poll answered nothing after its dispatcher's silo was killed");
            Assert.Equal(id, job.Id);
            Assert.False((await SiloOfAsync(dispatcher)).Equals(owner), "the dispatcher has a new activation");
        }
        finally
        {
            await RestoreSilosAsync();
        }
    }

    [Fact]
    public async Task ALetGoReachingActivationsOnASiloThatIsNotStopping_LeavesTheirPollWaiting()
    {
        // Grains on a stopping silo send themselves LetGoAsync; Orleans forwards what a deactivating activation had not run
        // to the grain's next activation, which may live on a silo that is not stopping: there it changes nothing.
        var accountId = await NewAccountAsync();
        var model = ApiClient.Unique();
        var dispatcher = Grains.GetGrain<IDispatcherGrain>(ModelNames.FamilyOf(model));
        var worker = Grains.GetGrain<IWorkerGrain>(await NewWorkerAsync(accountId, model));
        var poll = worker.NextJobAsync(Guid.NewGuid(), Models(model));
        await ParkedAsync(dispatcher);

        await dispatcher.LetGoAsync();
        Assert.Equal(1, (await dispatcher.StatsAsync()).ParkedPolls);
        await worker.LetGoAsync();
        Assert.False(poll.IsCompleted, "the worker grain ended its poll");

        var id = (await dispatcher.SubmitAsync(accountId, Job(model, 0))).Row!.Id;
        Assert.Equal(id, (await poll.WaitAsync(PollBound))?.Id);
    }

    [Fact]
    public async Task APollMadeOnOneSilo_GetsAJobSubmittedOnAnother_WithAMedianUnder100Ms()
    {
        var silos = Cluster.GetActiveSilos().ToList();
        var (submitter, poller) = (silos[0], silos[1]);
        var accountId = await NewAccountAsync();
        var model = ApiClient.Unique();
        var family = ModelNames.FamilyOf(model);
        var worker = GrainsOf(poller).GetGrain<IWorkerGrain>(await NewWorkerAsync(accountId, model));
        var dispatcherFromSubmitter = GrainsOf(submitter).GetGrain<IDispatcherGrain>(family);
        var dispatcher = Grains.GetGrain<IDispatcherGrain>(family);

        var latencies = new List<double>();
        for (var round = 0; round < 5; round++)
        {
            var poll = worker.NextJobAsync(Guid.NewGuid(), Models(model));
            await ParkedAsync(dispatcher);
            var started = Stopwatch.GetTimestamp();
            var id = (await dispatcherFromSubmitter.SubmitAsync(accountId, Job(model, 0))).Row!.Id;
            var job = await poll.WaitAsync(PollBound);
            latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            Assert.Equal(id, job?.Id);
        }
        Assert.Equal(poller.SiloAddress, await SiloOfAsync(worker));
        latencies.Sort();
        Assert.True(latencies[2] < 100,
            $"median from submission on one silo to the poll's answer on another was {latencies[2]:0.0} ms ({string.Join(", ", latencies.Select(l => l.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)))})");
    }

    [Fact]
    public async Task TwoActivationsOfOneDispatcher_ToldOfAJobAtOnce_HandItToOnePollOnly()
    {
        // Two clusters on one database: each has its own activation of the family's dispatcher, as two activations can
        // exist for a moment during membership churn.
        await using var race = await RaceAsync(rescanInterval: null);
        for (var round = 0; round < 6; round++)
        {
            await race.PollBothAsync();
            var lostBefore = race.ClaimsLost;
            var id = await race.InsertBehindTheirBacksAsync();

            var queued = new QueuedJob(id, race.Model, race.Model, ModelMatch.Exact, 0, race.AccountId);
            await Task.WhenAll(race.Sides.Select(side => side.Dispatcher.AddAsync([queued])));

            await race.AssertOnePollGotAsync(id, round);
            // Both claimed (each had a poll parked); the row let one through.
            Assert.Equal(lostBefore + 1, race.ClaimsLost);
        }
        Assert.Equal(6, race.Dispatched);
    }

    [Fact]
    public async Task TwoActivationsOfOneDispatcher_FindingAJobByTheirBackstopReads_HandItToOnePollOnly()
    {
        await using var race = await RaceAsync(rescanInterval: "00:00:00.200");
        for (var round = 0; round < 4; round++)
        {
            await race.PollBothAsync();
            var id = await race.InsertBehindTheirBacksAsync();
            await race.AssertOnePollGotAsync(id, round);
        }
        Assert.Equal(4, race.Dispatched);
    }

    private static async Task<Race> RaceAsync(string? rescanInterval)
    {
        Dictionary<string, string?> Settings(string cluster)
        {
            var settings = new Dictionary<string, string?> { ["Cluster:ClusterId"] = $"{cluster}-{Guid.NewGuid():N}" };
            if (rescanInterval is not null) settings["Dispatch:RescanInterval"] = rescanInterval;
            return settings;
        }
#pragma warning disable CA2000 // the race owns them and disposes them
        var hostA = await GridHost.StartAsync(settings: Settings("race-a"));
        var hostB = await GridHost.StartAsync(hostA.ConnectionString, settings: Settings("race-b"));
#pragma warning restore CA2000
        var race = new Race(hostA, hostB);
        try
        {
            await race.StartAsync();
            return race;
        }
        catch
        {
            await race.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Two single-silo clusters on one database, each with a worker polling the same model at its own activation of the
    /// model's dispatcher; counts the claims both lose and the jobs both hand out.
    /// </summary>
    private sealed class Race(GridHost hostA, GridHost hostB) : IAsyncDisposable
    {
        private readonly MeterListener _listener = new();
        private long _claimsLost;
        private long _dispatched;

        public string Model { get; } = ApiClient.Unique();

        public long AccountId { get; private set; }

        public Side[] Sides { get; private set; } = [];

        public long ClaimsLost => Interlocked.Read(ref _claimsLost);

        public long Dispatched => Interlocked.Read(ref _dispatched);

        public sealed class Side(GridHost host, long workerId, string model)
        {
            public GridHost Host => host;

            public long WorkerId => workerId;

            public IDispatcherGrain Dispatcher => host.Grains.GetGrain<IDispatcherGrain>(ModelNames.FamilyOf(model));

            public Task<ClaimedJob?>? Poll { get; set; }

            /// <summary>Whether a round handed this side's current poll its job (otherwise only its window may end it).</summary>
            public bool Answered { get; set; }

            public Task<ClaimedJob?> NewPoll() =>
                host.Grains.GetGrain<IWorkerGrain>(workerId).NextJobAsync(Guid.NewGuid(), Models(model));
        }

        public async Task StartAsync()
        {
            await Eventually.TrueAsync(() => hostA.IsActive && hostB.IsActive, "both silos are active");
            Assert.NotEqual(hostA.Silo, hostB.Silo);
            var client = await hostA.NewAccountOnPlanAsync(null, null);
            var (_, workerA) = await client.NewWorkerAsync("a", Model);
            var (_, workerB) = await client.NewWorkerAsync("b", Model);
            await using var connection = await hostA.OpenConnectionAsync();
            AccountId = await connection.ExecuteScalarAsync<long>("SELECT account_id FROM workers WHERE id = @workerA", new { workerA });
            Sides = [new Side(hostA, workerA, Model), new Side(hostB, workerB, Model)];

            var instruments = Sides.Select(side => side.Host.Get<DispatchMetrics>()).SelectMany(metrics => new Instrument[] { metrics.ClaimsLost, metrics.Dispatched }).ToHashSet();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instruments.Contains(instrument)) listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
            {
                if (instrument.Name == "coordinator.dispatch.claims_lost") Interlocked.Add(ref _claimsLost, value);
                else Interlocked.Add(ref _dispatched, value);
            });
            _listener.Start();
        }

        /// <summary>Gives each side a poll parked on its dispatcher: a new one where the last was answered.</summary>
        public async Task PollBothAsync()
        {
            foreach (var side in Sides)
            {
                if (side.Poll is { IsCompleted: true } done)
                {
                    // Only the window's end may answer a poll that no round gave a job.
                    if (!side.Answered) Assert.Null(await done);
                    side.Poll = null;
                }
                if (side.Poll is null)
                {
                    side.Poll = side.NewPoll();
                    side.Answered = false;
                }
            }
            foreach (var side in Sides) await side.Host.ParkedAsync(Model);
        }

        /// <summary>Inserts a pending job of the model without telling either dispatcher, as a lost notice would leave it.</summary>
        public async Task<long> InsertBehindTheirBacksAsync()
        {
            await using var connection = await hostA.OpenConnectionAsync();
            return await connection.ExecuteScalarAsync<long>("""
                INSERT INTO jobs (account_id, status, model, family, model_match, prompt, priority, timeout_seconds, created_at)
                VALUES (@AccountId, 'pending', @Model, @Model, 'exact', 'raced for', 0, 60, now()) RETURNING id
                """, new { AccountId, Model });
        }

        /// <summary>One poll got the job; the row names its worker, claimed once; the other poll waits on.</summary>
        public async Task AssertOnePollGotAsync(long id, int round)
        {
            var polls = Sides.Select(side => side.Poll!).ToArray();
            var first = await Task.WhenAny(polls).WaitAsync(PollBound);
            var winner = Sides[Array.IndexOf(polls, first)];
            var loser = Sides.Single(side => side != winner);
            Assert.Equal(id, (await first)?.Id);
            winner.Answered = true;

            await loser.Host.ParkedAsync(Model);
            Assert.False(loser.Poll!.IsCompleted, $"round {round}: the other poll was answered too");
            await using var connection = await hostA.OpenConnectionAsync();
            var row = await connection.QuerySingleAsync<(string Status, long? WorkerId, int Attempts)>(
                "SELECT status, worker_id, attempts FROM jobs WHERE id = @id", new { id });
            Assert.Equal((JobStatus.Claimed, winner.WorkerId, 1), (row.Status, row.WorkerId, row.Attempts));
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Dispose();
            await hostB.DisposeAsync();
            await hostA.DisposeAsync();
        }
    }
}
