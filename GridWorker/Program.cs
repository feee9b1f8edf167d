using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

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
                await Console.Out.WriteAsync(WorkerSettings.HelpText);
                return 0;
            case "version":
                await Console.Out.WriteLineAsync(WorkerAgent.AgentVersion);
                return 0;
        }
        var settings = parsed.Settings!;
        if (parsed.Command == "status")
        {
            using var http = CreateHttpClient();
            return await StatusCommand.RunAsync(settings, http, Console.Out, CancellationToken.None);
        }

        var host = WorkerHost.CreateBuilder(settings, Console.Out, TimeProvider.System).Build();
        var service = host.Services.GetRequiredService<WorkerService>();
        await host.RunAsync();
        return await service.ExitCode;
    }

    /// <summary>The client <c>grid-worker status</c> uses, made like the agent's (<see cref="WorkerHost"/>) without a host.</summary>
    public static HttpClient CreateHttpClient()
    {
#pragma warning disable CA2000 // the client owns its handler and disposes it with itself
        var client = new HttpClient(WorkerHost.CreateHandler());
#pragma warning restore CA2000
        WorkerHost.ConfigureClient(client);
        return client;
    }
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
