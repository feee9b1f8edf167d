using System.Text;

namespace GridWorker;

/// <summary>Where a job's output stream to the coordinator stands.</summary>
public enum ChunkStreamState
{
    /// <summary>Chunks are sent as the output comes.</summary>
    Streaming,

    /// <summary>No more chunks: a chunk could not be delivered or was refused. The output goes with the result alone.</summary>
    Stopped,

    /// <summary>The coordinator said the job is no longer this worker's: generation is cancelled and no result is sent.</summary>
    JobEnded,
}

/// <summary>
/// Sends one running job's output to the coordinator while the backend generates it (<c>POST /worker/jobs/{id}/chunks</c>).
/// At most one chunk request is in flight: what the backend produces meanwhile waits and leaves as the next chunk, so
/// chunks go in order and grow when the coordinator is slow. A chunk that cannot be delivered (coordinator down, or any
/// refusal but the job's end) stops the streaming for the rest of the job; its result still carries the whole output,
/// whose beginning the delivered chunks are. A chunk answered with the job's end cancels <c>jobEnded</c>.
/// </summary>
public sealed class ChunkStreamer(CoordinatorClient coordinator, Reporter reporter, long jobId, CancellationTokenSource jobEnded, CancellationToken cancellationToken)
{
    /// <summary>The coordinator's limit on one chunk's text, in UTF-8 bytes.</summary>
    public const int MaxChunkBytes = 64 * 1024;

    private readonly Lock _lock = new();
    private readonly StringBuilder _pending = new();
    private ChunkStreamState _state = ChunkStreamState.Streaming;
    private Task? _sending;
    private int _nextIndex;

    public ChunkStreamState State
    {
        get { lock (_lock) return _state; }
    }

    /// <summary>The coordinator's words when it ended the job.</summary>
    public string? EndedMessage { get; private set; }

    /// <summary>The next piece of output, as the backend streams it. Returns at once; the piece is sent when it is its turn.</summary>
    public void Append(string piece)
    {
        lock (_lock)
        {
            if (_state != ChunkStreamState.Streaming) return;
            _pending.Append(piece);
            _sending ??= SendAllAsync();
        }
    }

    /// <summary>
    /// Once the backend has finished: sends what is still waiting (with <paramref name="sendRest"/>; else stops
    /// streaming) and answers how the stream ended. When it answers <see cref="ChunkStreamState.Streaming"/>, the chunks
    /// joined are the whole output.
    /// </summary>
    public async Task<ChunkStreamState> FinishAsync(bool sendRest)
    {
        Task? sending;
        lock (_lock)
        {
            if (!sendRest && _state == ChunkStreamState.Streaming) _state = ChunkStreamState.Stopped;
            sending = _sending;
        }
        if (sending is not null) await sending;
        return State;
    }

    /// <summary>The send loop: runs while text waits, one request at a time, and ends when nothing is left.</summary>
    private async Task SendAllAsync()
    {
        await Task.Yield(); // started under the lock, from the backend's read loop: send from elsewhere, and let that loop go on
        while (TakeNext() is var (index, text))
        {
            ChunkAnswer answer;
            try
            {
                answer = await coordinator.AppendChunkAsync(jobId, index, text, cancellationToken);
            }
            catch (Exception ex)
            {
                // The job's own end, time limit or shutdown cancels the request: the agent says why the job stopped.
                if (ex is not OperationCanceledException) Stop($"chunk {index} could not be sent: {ex.Message}");
                else Stop(null);
                return;
            }
            if (answer.Outcome == ChunkOutcome.JobEnded)
            {
                lock (_lock)
                {
                    _state = ChunkStreamState.JobEnded;
                    EndedMessage = answer.Message;
                    _sending = null;
                }
                await jobEnded.CancelAsync();
                return;
            }
            if (answer.NextIndex != index + 1)
            {
                // The coordinator holds other text than this worker sent (it answered a duplicate for a chunk it never had).
                Stop($"the coordinator expects chunk {answer.NextIndex} after chunk {index}");
                return;
            }
        }
    }

    /// <summary>The next chunk to send, or null (and the loop ends) when nothing waits or streaming is over.</summary>
    private (int Index, string Text)? TakeNext()
    {
        lock (_lock)
        {
            if (_state != ChunkStreamState.Streaming || _pending.Length == 0)
            {
                _sending = null;
                return null;
            }
            var length = Utf8Prefix(_pending, MaxChunkBytes);
            var text = _pending.ToString(0, length);
            _pending.Remove(0, length);
            return (_nextIndex++, text);
        }
    }

    private void Stop(string? reason)
    {
        lock (_lock)
        {
            if (_state == ChunkStreamState.Streaming) _state = ChunkStreamState.Stopped;
            _pending.Clear();
            _sending = null;
        }
        if (reason is not null)
        {
            reporter.Warn("streaming_stopped", $"job {jobId}: {reason}; its output goes with the result only", ("job_id", jobId));
        }
    }

    /// <summary>How many of <paramref name="text"/>'s first chars fit in <paramref name="maxBytes"/> of UTF-8, never half a surrogate pair.</summary>
    internal static int Utf8Prefix(StringBuilder text, int maxBytes)
    {
        // No char takes more than 3 bytes (a surrogate pair takes 4 for two chars).
        if (text.Length <= maxBytes / 3) return text.Length;
        var bytes = 0;
        for (var i = 0; i < text.Length; i++)
        {
            var pair = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]);
            var size = pair ? 4 : text[i] < 0x80 ? 1 : text[i] < 0x800 ? 2 : 3;
            if (bytes + size > maxBytes) return i;
            bytes += size;
            if (pair) i++;
        }
        return text.Length;
    }
}
