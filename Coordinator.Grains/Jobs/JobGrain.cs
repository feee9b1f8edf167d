using System.Text;
using Coordinator.Grains.Dispatch;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Placement;

namespace Coordinator.Grains.Jobs;

/// <summary>What became of a chunk a worker sent.</summary>
public enum ChunkOutcome
{
    /// <summary>Appended to the stream.</summary>
    Accepted,
    /// <summary>Already there (a resent chunk): ignored.</summary>
    Duplicate,
    /// <summary>This worker does not hold the job running.</summary>
    NotHeld,
    /// <summary>A chunk came before the one expected (see <see cref="ChunkAnswer.NextIndex"/>).</summary>
    OutOfOrder,
    /// <summary>The job ended meanwhile (cancelled, timed out): the worker should stop.</summary>
    Ended,
    /// <summary>The output would pass its size limit.</summary>
    TooLarge,
}

[GenerateSerializer, Immutable]
public sealed record ChunkAnswer([property: Id(0)] ChunkOutcome Outcome, [property: Id(1)] int NextIndex, [property: Id(2)] string? Status = null);

/// <summary>
/// What a reader of a job's stream gets: the text past its offset, or the end. <see cref="Generation"/> counts restarts
/// (the job went back to the queue after it had started): a reader of an older generation starts again from 0.
/// </summary>
/// <param name="Text">Output past the reader's offset.</param>
/// <param name="Offset">The offset after <paramref name="Text"/> (UTF-16 code units of the output).</param>
/// <param name="Generation">The stream's generation.</param>
/// <param name="Restarted">The reader's generation was older: its text is void, and this slice starts at 0.</param>
/// <param name="Final">The job, once it has ended: the stream ends after <paramref name="Text"/>.</param>
/// <param name="Replaced">The job's output is not the text that was streamed: a reader replaces what it assembled with it.</param>
/// <param name="NotFound">No such job of this account.</param>
/// <param name="Leaving">The grain's silo is stopping: the reader should end its stream (its client reconnects elsewhere).</param>
[GenerateSerializer, Immutable]
public sealed record StreamSlice(
    [property: Id(0)] string Text,
    [property: Id(1)] int Offset,
    [property: Id(2)] int Generation,
    [property: Id(3)] bool Restarted,
    [property: Id(4)] JobRow? Final,
    [property: Id(5)] bool Replaced,
    [property: Id(6)] bool NotFound,
    [property: Id(7)] bool Leaving = false);

/// <summary>
/// One job after its submission (key: the job id): the client's transitions (cancel, priority change, retry, abandon),
/// a claim given back, and the job's output stream. Each transition is written through as one conditional update on the
/// expected state (see <see cref="JobStore"/>); what it changes for dispatch is told to the job's dispatcher. The
/// worker's transitions of a job it holds (start, result, failure) go through its <see cref="Workers.IWorkerGrain"/>,
/// which tells this grain when a watched job ends.
/// </summary>
public interface IJobGrain : IGrainWithIntegerKey
{
    /// <summary>pending → cancelled, by the client.</summary>
    Task<Transition<JobRow>> CancelAsync(long accountId);

    /// <summary>A pending job's priority moves by a signed delta.</summary>
    Task<Transition<JobRow>> ChangePriorityAsync(long accountId, int delta);

    /// <summary>failed → pending, in place.</summary>
    Task<Transition<JobRow>> RetryAsync(long accountId);

    /// <summary>A claim whose poll went away before it was answered goes back to pending, not counted as an attempt.</summary>
    Task ReleaseClaimAsync(long workerId);

    /// <summary>Its client went away: the job is cancelled unless it has ended (a running job's worker hears at its next chunk or result).</summary>
    Task<Transition<JobRow>> AbandonAsync(long accountId);

    /// <summary>Its client cancels it, running or not (AITBC's cancel): as <see cref="AbandonAsync"/>, with the client's reason.</summary>
    Task<Transition<JobRow>> CancelUnfinishedAsync(long accountId);

    /// <summary>The <paramref name="index"/>-th chunk of the output, from the worker that holds the job running.</summary>
    Task<ChunkAnswer> AppendChunkAsync(long workerId, int index, string text);

    /// <summary>
    /// The stream past <paramref name="offset"/> of <paramref name="generation"/>: answers as soon as there is text past
    /// it or the job has ended, or after a while with nothing (the reader asks again); without <paramref name="wait"/>,
    /// at once with what there is. The first read marks the job watched.
    /// </summary>
    [ResponseTimeout("00:01:00")]
    Task<StreamSlice> ReadStreamAsync(long accountId, int generation, int offset, bool wait = true);

    /// <summary>Its silo is stopping: reads waiting here answer at once, saying so, and new ones do not wait.</summary>
    [OneWay]
    Task LetGoAsync();

    /// <summary>A watched job ended (told by whoever ended it).</summary>
    [OneWay]
    Task EndedAsync();

    /// <summary>
    /// A watched job went back to the queue after it had started, ending its <paramref name="attempt"/>: its stream starts
    /// again. A notice that comes after the next attempt's first chunk (it may: the two come from different callers) is
    /// stale and changes nothing.
    /// </summary>
    [OneWay]
    Task RestartedAsync(int attempt);
}

/// <summary>
/// Holds nothing between transitions: the row is the state, and each transition's conditional update decides. A job
/// being streamed is the exception: the chunks are held here (never written to the table one by one; the result writes
/// the output as before) and readers wait here for more, wherever they, the worker and this grain are. A watched job's
/// changes reach this grain from whoever makes them; a reader that waits long for nothing has the row read again, the
/// backstop for a notice that was lost.
/// </summary>
[Reentrant, PreferLocalPlacement, CollectionAgeLimit(Minutes = 2)]
public sealed class JobGrain(
    JobStore jobs, Dispatchers dispatchers, TimeProvider time, IOptions<JobLimitsOptions> limits, Microsoft.Extensions.Hosting.IHostApplicationLifetime lifetime,
    Telemetry.CoordinatorMetrics metrics)
    : Grain, IJobGrain
{
    /// <summary>How long a read waits for text before it answers nothing (the reader asks again; SSE sends a keep-alive).</summary>
    private static readonly TimeSpan ReadWait = TimeSpan.FromSeconds(15);

    private readonly StringBuilder _text = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private StreamState _state = StreamState.Unknown;
    private long? _accountId;
    private long? _worker;
    private int _nextIndex;
    private long _bytes;
    private int _generation;
    // The attempt whose text this grain holds or expects next (0: not known yet).
    private int _attempt;
    private JobRow? _final;

    /// <summary>What this grain knows of the job's stream.</summary>
    private enum StreamState
    {
        /// <summary>Nothing yet: the row is read when needed.</summary>
        Unknown,
        /// <summary>Marked watched, not ended, no chunk yet.</summary>
        Watched,
        /// <summary>Its worker streams it and the text here is all of it so far.</summary>
        Streaming,
        /// <summary>Its worker streams it but the beginning was lost (a new activation): readers get the result only.</summary>
        Incomplete,
        /// <summary>The job ended; <see cref="_final"/> is the row.</summary>
        Ended,
    }

    private long JobId => this.GetPrimaryKeyLong();

    private CancellationTokenRegistration _stopping;
    private bool _leaving;

    // Reads in this activation now, waiting or about to (see DeactivateUnlessStreaming).
    private int _reading;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // A read waits here up to ReadWait; a stopping silo would wait for it to deactivate this grain.
        var self = this.AsReference<IJobGrain>();
        _stopping = lifetime.ApplicationStopping.Register(() => _ = self.LetGoAsync());
        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken) => await _stopping.DisposeAsync();

    public Task LetGoAsync()
    {
        _leaving = true;
        Changed();
        return Task.CompletedTask;
    }

    public async Task<Transition<JobRow>> CancelAsync(long accountId)
    {
        var cancelled = await jobs.CancelAsync(accountId, JobId);
        if (cancelled.Value is { } job)
        {
            await dispatchers.RemoveAsync([QueuedJob.Of(job)]);
            End(job);
        }
        DeactivateUnlessStreaming();
        return cancelled;
    }

    public async Task<Transition<JobRow>> ChangePriorityAsync(long accountId, int delta)
    {
        var changed = await jobs.ChangePriorityAsync(accountId, JobId, delta);
        if (changed.Value is { Held: false } job) await dispatchers.AddAsync([QueuedJob.Of(job)]);
        DeactivateUnlessStreaming();
        return changed;
    }

    public async Task<Transition<JobRow>> RetryAsync(long accountId)
    {
        var retried = await jobs.RetryAsync(accountId, JobId);
        if (retried.Value is { } job)
        {
            if (!job.Held) await dispatchers.AddAsync([QueuedJob.Of(job)]);
            Restart();
        }
        DeactivateUnlessStreaming();
        return retried;
    }

    public async Task ReleaseClaimAsync(long workerId)
    {
        if (await jobs.ReleaseClaimAsync(workerId, JobId) is { } released) await dispatchers.AddAsync([released]);
        DeactivateUnlessStreaming();
    }

    public Task<Transition<JobRow>> AbandonAsync(long accountId) => EndUnfinishedAsync(accountId, "cancelled: the client went away");

    public Task<Transition<JobRow>> CancelUnfinishedAsync(long accountId) => EndUnfinishedAsync(accountId, "cancelled by the client");

    private async Task<Transition<JobRow>> EndUnfinishedAsync(long accountId, string reason)
    {
        var abandoned = await jobs.AbandonAsync(accountId, JobId, reason);
        if (abandoned.Value is { } job)
        {
            await dispatchers.RemoveAsync([QueuedJob.Of(job)]);
            // A claimed or running job keeps its worker: that worker hears it at its next heartbeat.
            if (job.WorkerId is { } workerId) _ = GrainFactory.GetGrain<Workers.IWorkerGrain>(workerId).JobCancelledAsync(JobId);
            End(job);
        }
        return abandoned;
    }

    public async Task<ChunkAnswer> AppendChunkAsync(long workerId, int index, string text)
    {
        if (_state == StreamState.Ended) return new ChunkAnswer(ChunkOutcome.Ended, _nextIndex, _final!.Status);
        if (_worker != workerId || _state is StreamState.Unknown or StreamState.Watched)
        {
            // The first chunk of this worker here: it must hold the job running. That marks the job watched, so that its end
            // and its restarts reach this grain.
            if (await jobs.StreamByAsync(workerId, JobId) is not { } held) return new ChunkAnswer(ChunkOutcome.NotHeld, _nextIndex);
            var (accountId, attempt, createdAt, family) = held;
            // The first chunk of the first attempt: the client's time to first token.
            if (index == 0 && attempt == 1 && _nextIndex == 0)
            {
                metrics.TimeToFirstToken.Record(Math.Max(0, (time.GetUtcNow().UtcDateTime - createdAt).TotalSeconds), metrics.FamilyTag(family));
            }
            if (_state == StreamState.Ended) return new ChunkAnswer(ChunkOutcome.Ended, _nextIndex, _final!.Status);
            if (_attempt != 0 && attempt > _attempt)
            {
                // A later attempt than the text here, before the notice of the restart: readers start again now.
                ClearText();
                _generation++;
                Changed();
            }
            else if (_worker != workerId)
            {
                ClearText();
            }
            _attempt = attempt;
            _worker = workerId;
            _accountId = accountId;
            _state = index == 0 || _nextIndex > 0 ? StreamState.Streaming : StreamState.Incomplete;
            if (_state == StreamState.Incomplete) _nextIndex = index;
        }
        if (index < _nextIndex) return new ChunkAnswer(ChunkOutcome.Duplicate, _nextIndex);
        if (index > _nextIndex) return new ChunkAnswer(ChunkOutcome.OutOfOrder, _nextIndex);
        var bytes = Encoding.UTF8.GetByteCount(text);
        if (_bytes + bytes > limits.Value.MaxOutputBytes) return new ChunkAnswer(ChunkOutcome.TooLarge, _nextIndex);
        _bytes += bytes;
        _nextIndex++;
        // Without its beginning the text is of no use to a reader: only its order and size are kept.
        if (_state == StreamState.Incomplete) return new ChunkAnswer(ChunkOutcome.Accepted, _nextIndex);
        _text.Append(text);
        Changed();
        return new ChunkAnswer(ChunkOutcome.Accepted, _nextIndex);
    }

    public async Task<StreamSlice> ReadStreamAsync(long accountId, int generation, int offset, bool wait = true)
    {
        _reading++;
        try
        {
            return await ReadAsync(accountId, generation, offset, wait);
        }
        finally
        {
            _reading--;
        }
    }

    private async Task<StreamSlice> ReadAsync(long accountId, int generation, int offset, bool wait)
    {
        if (_accountId is null || _state is StreamState.Unknown)
        {
            // Marked watched before the row is looked at: an end after this is told to this grain, one before is in the row.
            if (await jobs.WatchAsync(accountId, JobId) is not { } row) return NotFound();
            _accountId = row.AccountId;
            if (IsTerminal(row.Status)) End(row);
            else if (_state == StreamState.Unknown) _state = StreamState.Watched;
        }
        if (_accountId != accountId) return NotFound();

        var deadline = time.GetUtcNow() + ReadWait;
        while (true)
        {
            if (generation != _generation) return Slice(0, restarted: true);
            if (_state == StreamState.Ended) return FinalSlice(offset);
            if (_state == StreamState.Streaming && _text.Length > offset) return Slice(Math.Max(offset, 0), restarted: false);
            if (!wait) return Nothing(offset, generation);
            if (_leaving) return Nothing(offset, generation, leaving: true);
            var changed = _changed.Task;
            var remaining = deadline - time.GetUtcNow();
            if (remaining <= TimeSpan.Zero || await Task.WhenAny(changed, Task.Delay(remaining, time)) != changed)
            {
                // Nothing for a while: the row is the record, in case the notice of an end was lost.
                if (_state != StreamState.Ended && await jobs.FindAsync(JobId) is { } row && IsTerminal(row.Status)) End(row);
                // The reader's own generation: a restart while it waited must still reach it as one (at its next read).
                return _state == StreamState.Ended ? FinalSlice(offset) : Nothing(offset, generation);
            }
        }
    }

    public async Task EndedAsync()
    {
        if (await jobs.FindAsync(JobId) is { } row && IsTerminal(row.Status)) End(row);
    }

    public Task RestartedAsync(int attempt)
    {
        if (attempt < _attempt) return Task.CompletedTask;
        Restart();
        // The next attempt's chunks belong to the generation just begun.
        _attempt = attempt + 1;
        return Task.CompletedTask;
    }

    /// <summary>
    /// A client transition leaves nothing here worth keeping unless the job is being streamed or read: the grain goes once
    /// idle, so a job at rest costs no memory. A read in progress keeps it. Deactivating under a waiting read (this grain
    /// is reentrant) would strand it: the notices that answer it (the job's end, a chunk) would go to the next activation,
    /// and the read would hear only at its <see cref="ReadWait"/> fallback (the Lightning bench found session requests
    /// stalled 15 s this way when a worker gave a claim back).
    /// </summary>
    private void DeactivateUnlessStreaming()
    {
        if (_reading == 0 && _state is not (StreamState.Streaming or StreamState.Incomplete)) DeactivateOnIdle();
    }

    private static bool IsTerminal(string status) => status is JobStatus.Completed or JobStatus.Failed or JobStatus.Cancelled;

    private void End(JobRow row)
    {
        _final = row;
        _state = StreamState.Ended;
        Changed();
    }

    private void ClearText()
    {
        _text.Clear();
        _bytes = 0;
        _nextIndex = 0;
    }

    private void Restart()
    {
        ClearText();
        _worker = null;
        _final = null;
        _generation++;
        _state = StreamState.Unknown;
        Changed();
    }

    private void Changed()
    {
        var changed = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        changed.TrySetResult();
    }

    private StreamSlice Slice(int offset, bool restarted) =>
        new(_text.ToString(offset, _text.Length - offset), _text.Length, _generation, restarted, null, false, false);

    /// <summary>
    /// The end of the stream: the rest of the job's output past the reader's offset. The output is what the worker reported
    /// as its result, and the chunks are meant to be its beginning. When the text streamed up to the reader's offset is not
    /// the output's beginning, the reader is told to replace what it assembled (and gets no text: the job carries the whole
    /// output). Without the streamed text (this activation never held it) the output's beginning is taken for it.
    /// </summary>
    private StreamSlice FinalSlice(int offset)
    {
        // A job that failed or was cancelled has no output to check the text against: what was streamed stands.
        if (_final!.Status != JobStatus.Completed) return new StreamSlice("", Math.Max(offset, 0), _generation, false, _final, Replaced: false, false);
        var output = _final.Output ?? "";
        var streamed = _text.ToString();
        var consistent = offset >= 0 && offset <= output.Length
            && (streamed.Length == 0 || (offset <= streamed.Length && string.CompareOrdinal(output, 0, streamed, 0, offset) == 0));
        if (!consistent)
        {
            return new StreamSlice("", output.Length, _generation, false, _final, Replaced: true, false);
        }
        // Never half a surrogate pair: an offset inside one (a client's made-up Last-Event-ID) starts before it.
        if (offset > 0 && offset < output.Length && char.IsLowSurrogate(output[offset])) offset--;
        return new StreamSlice(output[offset..], output.Length, _generation, false, _final, Replaced: false, false);
    }

    private StreamSlice NotFound() => new("", 0, _generation, false, null, false, NotFound: true);

    /// <summary>No text yet for a reader at <paramref name="offset"/> of its <paramref name="generation"/>.</summary>
    private static StreamSlice Nothing(int offset, int generation, bool leaving = false) =>
        new("", offset, generation, false, null, false, false, leaving);
}
