using Microsoft.Extensions.Hosting;

namespace GridWorker;

/// <summary>
/// The agent as the host's background service. The host's stopping token stops it: no new polls, running jobs get
/// the grace period. When the agent returns, stopped or unable to start, the host stops with it.
/// </summary>
public sealed class WorkerService(WorkerAgent agent, IHostApplicationLifetime lifetime) : BackgroundService
{
    private readonly TaskCompletionSource<int> _exitCode = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The agent's exit code once it has returned (0 stopped, 1 could not start); faulted when it threw.</summary>
    public Task<int> ExitCode => _exitCode.Task;

    /// <summary>
    /// Ctrl-C or SIGTERM. The first stops the host, which lets running jobs finish within the grace period; one that
    /// comes while the host is already stopping fails the running jobs now.
    /// </summary>
    public void RequestStop()
    {
        if (lifetime.ApplicationStopping.IsCancellationRequested) agent.AbortRunningJobs();
        else lifetime.StopApplication();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            _exitCode.SetResult(await agent.RunAsync(stoppingToken));
        }
        catch (Exception ex)
        {
            _exitCode.SetException(ex);
            throw;
        }
        finally
        {
            // An agent that could not start (no backend, a wrong key) returns by itself; the process ends with it.
            lifetime.StopApplication();
        }
    }
}
