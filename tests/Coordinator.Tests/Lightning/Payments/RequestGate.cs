namespace Coordinator.Tests.Lightning.Payments;

/// <summary>
/// Holds a fake server's answers while a test wants them held: a request that arrives while the gate is closed waits
/// until it opens, its client gives up, or the server stops. A closed gate that never opens is a server that hangs.
/// </summary>
public sealed class RequestGate
{
    private readonly Lock _lock = new();
    private TaskCompletionSource _open = NewOpen();

    public RequestGate() => _open.SetResult();

    /// <summary>Requests that arrive from now on wait.</summary>
    public void Close()
    {
        lock (_lock)
        {
            if (_open.Task.IsCompleted) _open = NewOpen();
        }
    }

    /// <summary>Waiting requests and those that arrive from now on go through.</summary>
    public void Open()
    {
        lock (_lock) _open.TrySetResult();
    }

    public Task PassAsync(CancellationToken cancellationToken)
    {
        lock (_lock) return _open.Task.WaitAsync(cancellationToken);
    }

    private static TaskCompletionSource NewOpen() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
