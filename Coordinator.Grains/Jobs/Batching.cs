namespace Coordinator.Grains.Jobs;

/// <summary>
/// Group commit in the application. Callers enqueue one item and await their own result; whatever has queued while
/// earlier batches were in flight runs next as one call of the batch function (one statement, one commit). There is
/// no added delay: a lone caller runs at once, alone, so latency at low load is unchanged, and batches grow only with
/// the load. Up to <c>maxInFlight</c> batches run at once, so one slow commit does not stall everyone.
/// </summary>
/// <remarks>
/// The batch function answers one result per item, in order. If it throws, every caller of that batch sees the
/// exception. A caller that cancels before its item was taken leaves the queue; once taken, the item runs (the
/// others in its batch are unaffected) and only that caller stops waiting.
/// </remarks>
public sealed class Batcher<TItem, TResult>
{
    private readonly Func<IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> _run;
    private readonly int _maxBatch;
    private readonly int _maxInFlight;
    private readonly Lock _lock = new();
    private readonly Queue<Entry> _queue = new();
    private int _inFlight;
    private long _batches;

    public Batcher(Func<IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> run, int maxBatch = 500, int maxInFlight = 2)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxInFlight, 1);
        _run = run;
        _maxBatch = maxBatch;
        _maxInFlight = maxInFlight;
    }

    /// <summary>Nothing queued and no batch running.</summary>
    public bool IsIdle
    {
        get
        {
            lock (_lock) return _inFlight == 0 && _queue.Count == 0;
        }
    }

    /// <summary>Number of batches run so far (for tests and diagnostics).</summary>
    public long Batches => Interlocked.Read(ref _batches);

    public Task<TResult> RunAsync(TItem item, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var entry = new Entry(item);
        Enqueue([entry]);
        if (!cancellationToken.CanBeCanceled) return entry.Result.Task;
        // Cancelling completes this caller's task only; a batch that already took the item still runs it.
        var registration = cancellationToken.Register(static state => ((Entry)state!).Result.TrySetCanceled(), entry);
        entry.Result.Task.ContinueWith(static (_, state) => ((CancellationTokenRegistration)state!).Dispose(), registration, TaskScheduler.Default);
        return entry.Result.Task;
    }

    /// <summary>
    /// Enqueues several items at once, so they run together (in one batch where they fit) rather than the first alone
    /// and the rest after it. Not cancellable: a caller handing over a batch waits for all of it.
    /// </summary>
    public Task<TResult[]> RunManyAsync(IReadOnlyList<TItem> items)
    {
        var entries = items.Select(item => new Entry(item)).ToList();
        Enqueue(entries);
        return Task.WhenAll(entries.Select(entry => entry.Result.Task));
    }

    // Queues the entries together and starts a batch if a slot is free.
    private void Enqueue(IReadOnlyList<Entry> entries)
    {
        List<Entry>? batch;
        lock (_lock)
        {
            foreach (var entry in entries) _queue.Enqueue(entry);
            batch = TakeBatch();
        }
        if (batch is not null) _ = RunBatchAsync(batch);
    }

    // Caller holds _lock. Takes the next batch if a slot is free and anything (not cancelled) is queued.
    private List<Entry>? TakeBatch()
    {
        if (_inFlight >= _maxInFlight) return null;
        List<Entry>? batch = null;
        while (_queue.Count > 0 && (batch?.Count ?? 0) < _maxBatch)
        {
            var entry = _queue.Dequeue();
            if (entry.Result.Task.IsCompleted) continue; // its caller cancelled while it queued
            (batch ??= new List<Entry>(Math.Min(_queue.Count + 1, _maxBatch))).Add(entry);
        }
        if (batch is not null) _inFlight++;
        return batch;
    }

    private async Task RunBatchAsync(List<Entry> first)
    {
        List<Entry>? batch = first;
        while (batch is not null)
        {
            Interlocked.Increment(ref _batches);
            IReadOnlyList<TResult>? results = null;
            Exception? failure = null;
            try
            {
                // Yield to the thread pool first, so the enqueuing caller is not held up by the statement and the batch does not
                // run under the caller's context: a grain's scheduler would tie every caller of the batch to that grain's turns.
                await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
                results = await _run(batch.Select(e => e.Item).ToList());
                if (results.Count != batch.Count) throw new InvalidOperationException($"batch of {batch.Count} answered {results.Count} results");
            }
            catch (Exception exception)
            {
                failure = exception;
            }
            // The slot is given back before the callers hear, so a caller that finds the batcher idle really finds it idle.
            List<Entry>? next;
            lock (_lock)
            {
                _inFlight--;
                next = TakeBatch();
            }
            for (var i = 0; i < batch.Count; i++)
            {
                if (failure is null) batch[i].Result.TrySetResult(results![i]);
                else batch[i].Result.TrySetException(failure);
            }
            batch = next;
        }
    }

    private sealed class Entry(TItem item)
    {
        public TItem Item { get; } = item;
        public TaskCompletionSource<TResult> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>One item's own answer inside a batch: its value, or an exception that only its caller should see.</summary>
public readonly struct Outcome<T>
{
    private readonly T? _value;
    private readonly System.Runtime.ExceptionServices.ExceptionDispatchInfo? _error;

    private Outcome(T? value, System.Runtime.ExceptionServices.ExceptionDispatchInfo? error)
    {
        _value = value;
        _error = error;
    }

    public static Outcome<T> Of(T value) => new(value, null);

    public static Outcome<T> Failed(Exception exception) => new(default, System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(exception));

    /// <summary>The value, or the item's exception rethrown with its original stack.</summary>
    public T Value
    {
        get
        {
            _error?.Throw();
            return _value!;
        }
    }
}
