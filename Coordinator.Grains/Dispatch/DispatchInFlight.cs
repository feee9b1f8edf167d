namespace Coordinator.Grains.Dispatch;

/// <summary>
/// The silo's dispatch work whose answer must reach a worker: a dispatcher's claim for a poll (from its claim to the
/// poll's answer) and a worker grain's poll. A graceful stop waits for it (<see cref="WhenIdleAsync"/>) before the silo
/// leaves: Orleans' stop abandons calls still running in its activations, so a claim committed in the database whose
/// answer was not yet sent would reach no worker and come back only after the claim lease.
/// </summary>
public sealed class DispatchInFlight
{
    private readonly object _gate = new();
    private int _count;
    private TaskCompletionSource? _idle;

    /// <summary>Counts one piece of work until the answer is disposed.</summary>
    public IDisposable Enter()
    {
        lock (_gate) _count++;
        return new Scope(this);
    }

    public int Count
    {
        get { lock (_gate) return _count; }
    }

    /// <summary>Completes when nothing is in flight (at once if nothing is), or when the token is cancelled.</summary>
    public async Task WhenIdleAsync(CancellationToken cancellationToken)
    {
        Task idle;
        lock (_gate)
        {
            if (_count == 0) return;
            _idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            idle = _idle.Task;
        }
        await idle.WaitAsync(cancellationToken);
    }

    private void Leave()
    {
        TaskCompletionSource? idle = null;
        lock (_gate)
        {
            if (--_count == 0)
            {
                idle = _idle;
                _idle = null;
            }
        }
        idle?.TrySetResult();
    }

    private sealed class Scope(DispatchInFlight owner) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0) owner.Leave();
        }
    }
}
