using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;

namespace GridWorker;

/// <summary>
/// Ctrl-C and SIGTERM for <c>grid-worker run</c>, in place of the Generic Host's <c>ConsoleLifetime</c>, which only
/// stops the host (a second signal changes nothing) and prints its own start-up lines. Each signal here is a
/// <see cref="WorkerService.RequestStop"/>: the first lets running jobs finish, a second fails them now.
/// </summary>
public sealed class SignalLifetime(WorkerService service) : IHostLifetime, IDisposable
{
    private PosixSignalRegistration? _interrupt;
    private PosixSignalRegistration? _terminate;

    public Task WaitForStartAsync(CancellationToken cancellationToken)
    {
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        _interrupt?.Dispose();
        _terminate?.Dispose();
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true; // the process ends when the agent has stopped, not at the signal
        service.RequestStop();
    }
}
