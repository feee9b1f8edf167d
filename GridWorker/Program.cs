using System.Globalization;
using System.Runtime.InteropServices;

namespace GridWorker;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        ParsedCommand parsed;
        try
        {
            parsed = WorkerSettings.Parse(args, Environment.GetEnvironmentVariable);
        }
        catch (SettingsException ex)
        {
            await Console.Error.WriteLineAsync($"grid-worker: {ex.Message}");
            return 2;
        }
        switch (parsed.Command)
        {
            case "help":
                Console.Out.Write(WorkerSettings.HelpText);
                return 0;
            case "version":
                Console.Out.WriteLine(WorkerAgent.AgentVersion);
                return 0;
        }
        var settings = parsed.Settings!;
        using var http = CreateHttpClient();
        if (parsed.Command == "status") return await StatusCommand.RunAsync(settings, http, Console.Out, CancellationToken.None);

        var reporter = new Reporter(Console.Out, settings.JsonOutput, TimeProvider.System);
        var agent = new WorkerAgent(settings, http, reporter, TimeProvider.System);
        using var stopping = new CancellationTokenSource();
        void Stop()
        {
            // The first Ctrl-C/SIGTERM stops polling and lets running jobs finish; a second fails them now.
            if (stopping.IsCancellationRequested) agent.AbortRunningJobs();
            else stopping.Cancel();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => { context.Cancel = true; Stop(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => { context.Cancel = true; Stop(); });
        return await agent.RunAsync(stopping.Token);
    }

    /// <summary>One client for the coordinator, the backend and blob downloads; each call sets its own deadline.</summary>
    public static HttpClient CreateHttpClient() => new(new SocketsHttpHandler
    {
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(90),
        ConnectTimeout = TimeSpan.FromSeconds(10),
    })
    {
        Timeout = Timeout.InfiniteTimeSpan,
        DefaultRequestHeaders = { { "User-Agent", "grid-worker/" + WorkerAgent.AgentVersion } },
    };
}

/// <summary><c>grid-worker status</c>: the worker's credits from <c>GET /worker/credits</c>.</summary>
public static class StatusCommand
{
    public static async Task<int> RunAsync(WorkerSettings settings, HttpClient http, TextWriter output, CancellationToken cancellationToken)
    {
        var coordinator = new CoordinatorClient(http, settings.Coordinator, settings.ApiKey);
        CreditBalance credits;
        try
        {
            credits = await coordinator.CreditsAsync(cancellationToken);
        }
        catch (CoordinatorException ex)
        {
            await output.WriteLineAsync(ex.Status == System.Net.HttpStatusCode.Unauthorized
                ? $"error: {ex.Message}. Is this key registered as a worker? Start grid-worker with it once."
                : $"error: {ex.Message}");
            return 1;
        }
        if (settings.JsonOutput)
        {
            await output.WriteLineAsync(System.Text.Json.JsonSerializer.Serialize(credits, Json.Options));
            return 0;
        }
        var inv = CultureInfo.InvariantCulture;
        await output.WriteLineAsync(string.Format(inv, "balance:      {0:0.0000} credits (≈ {1:0.00} USD)", credits.Balance, credits.Balance * credits.CreditValueUsd));
        await output.WriteLineAsync(string.Format(inv, "total earned: {0:0.0000} credits", credits.TotalEarned));
        var history = credits.History ?? [];
        if (history.Count > 0)
        {
            await output.WriteLineAsync("recent:");
            foreach (var entry in history.Take(10))
            {
                await output.WriteLineAsync(string.Format(inv, "  {0:yyyy-MM-dd HH:mm} UTC  +{1:0.0000}  {2} tokens{3}",
                    entry.CreatedAt.UtcDateTime, entry.CreditsEarned, entry.OutputTokens?.ToString(inv) ?? "?", entry.PaidOut ? "  (paid out)" : ""));
            }
        }
        return 0;
    }
}
