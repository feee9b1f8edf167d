using System.Net;
using System.Reflection;
using System.Runtime.InteropServices;
using GridWorker.Backends;

namespace GridWorker;

/// <summary>
/// The worker: checks the backend, registers, then runs <see cref="WorkerSettings.Concurrency"/> poll loops that take
/// jobs, run them on the backend and report them. Beside them, heartbeats while jobs run and a watch on the backend's
/// model list. <see cref="RunAsync"/> returns when stopped: no new polls, running jobs get the grace period, then fail.
/// </summary>
public sealed class WorkerAgent : IDisposable
{
    public const string ShuttingDownMessage = "worker shutting down";

    /// <summary>Largest attachment fetched from a blob URL.</summary>
    public const long MaxAttachmentBytes = 32 * 1024 * 1024;

    /// <summary>How many times a start, result or fail is sent while the coordinator is unreachable before giving up.</summary>
    private const int TransitionAttempts = 8;

    /// <summary>A 204 faster than this did not wait out a poll window.</summary>
    private static readonly TimeSpan QuickEmptyPoll = TimeSpan.FromSeconds(1);

    private readonly WorkerSettings _settings;
    private readonly CoordinatorClient _coordinator;
    private readonly InferenceBackend _backend;
    private readonly ImageBackend? _images;
    private readonly HttpClient _http;
    private readonly Reporter _reporter;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _abortJobs = new();
    private readonly CancellationTokenSource _giveUp = new();
    private readonly Lock _modelsLock = new();
    private IReadOnlyList<WorkerModelEntry> _advertised = [];
    private CancellationTokenSource _modelsChanged = new();
    private int _running;
    // The running jobs' "ended" switches, for a heartbeat that says the coordinator cancelled one.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, CancellationTokenSource> _endSwitches = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, byte> _cancelledByCoordinator = new();
    private volatile bool _backendDown;
    private volatile bool _disposed;

    public WorkerAgent(WorkerSettings settings, HttpClient http, Reporter reporter, TimeProvider time)
    {
        _settings = settings;
        _http = http;
        _reporter = reporter;
        _time = time;
        _coordinator = new CoordinatorClient(http, settings.Coordinator, settings.ApiKey);
        _backend = InferenceBackend.Create(settings, http);
        _images = settings.ImageUrl is null ? null : new ImageBackend(http, settings.ImageUrl, settings.ImageApiKey, settings.ImageModels);
    }

    public static string AgentVersion =>
        typeof(WorkerAgent).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    /// <summary>Like Go's GOOS/GOARCH: <c>linux/amd64</c>, <c>darwin/arm64</c>.</summary>
    public static string Platform
    {
        get
        {
            var os = OperatingSystem.IsLinux() ? "linux" : OperatingSystem.IsMacOS() ? "darwin" : OperatingSystem.IsWindows() ? "windows" : "other";
            var arch = RuntimeInformation.OSArchitecture switch
            {
                Architecture.X64 => "amd64",
                Architecture.Arm64 => "arm64",
                Architecture.X86 => "386",
                var other => other.ToString().ToLowerInvariant(),
            };
            return $"{os}/{arch}";
        }
    }

    /// <summary>The worker id the coordinator gave at registration (0 before).</summary>
    public long WorkerId { get; private set; }

    /// <summary>Jobs between start and their result or failure.</summary>
    public int RunningJobs => Volatile.Read(ref _running);

    public IReadOnlyList<WorkerModelEntry> AdvertisedModels
    {
        get { lock (_modelsLock) return _advertised; }
    }

    /// <summary>Fails the running jobs now instead of at the end of the grace period (a second Ctrl-C).</summary>
    public void AbortRunningJobs()
    {
        // A signal can still arrive after the host has stopped and disposed the agent; nothing runs by then.
        if (_disposed) return;
        _abortJobs.Cancel();
        _giveUp.Cancel();
    }

    /// <summary>Called by the host once <see cref="RunAsync"/> has returned, so no job or poll uses the tokens any more.</summary>
    public void Dispose()
    {
        _disposed = true;
        _abortJobs.Dispose();
        _giveUp.Dispose();
        lock (_modelsLock) _modelsChanged.Dispose();
    }

    /// <summary>Runs until <paramref name="stopping"/> fires and the running jobs are done. Answers the exit code.</summary>
    public async Task<int> RunAsync(CancellationToken stopping)
    {
        IReadOnlyList<string> available;
        try
        {
            available = await _backend.ListModelsAsync(stopping);
        }
        catch (BackendUnreachableException)
        {
            _reporter.Error("backend_unreachable", _backend.UnreachableMessage, ("backend_url", _backend.BaseUrl.ToString()));
            return 1;
        }
        catch (BackendException ex)
        {
            _reporter.Error("backend_error", ex.Message);
            return 1;
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            return 0;
        }

        var missing = (_settings.Models ?? []).Where(m => !available.Contains(m, StringComparer.Ordinal)).ToList();
        if (missing.Count > 0)
        {
            var pull = _settings.Backend == BackendKind.Ollama ? $" Pull it with `ollama pull {missing[0]}`, or leave it out of --models." : " Load it, or leave it out of --models.";
            _reporter.Error("model_missing",
                $"{string.Join(", ", missing)} {(missing.Count == 1 ? "is" : "are")} not available on {_backend.DisplayName} at {_backend.BaseUrl.ToString().TrimEnd('/')} " +
                $"(it has: {(available.Count == 0 ? "nothing" : string.Join(", ", available))}).{pull}");
            return 1;
        }
        var advertised = Advertise(available);
        if (advertised.Count == 0)
        {
            _reporter.Error("no_models", _backend.NoModelsMessage);
            return 1;
        }
        lock (_modelsLock) _advertised = advertised;

        long workerId;
        try
        {
            workerId = await RetryAsync("register", ct => RegisterAsync(advertised, ct), int.MaxValue, stopping);
        }
        catch (CoordinatorException ex)
        {
            _reporter.Error("register_failed", $"could not register with the coordinator: {ex.Message}");
            return 1;
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            return 0;
        }
        _reporter.Info("registered",
            $"grid-worker {AgentVersion} registered as worker {workerId} \"{_settings.Name}\" at {_settings.Coordinator}; " +
            $"serving {string.Join(", ", advertised.Select(m => m.Name))} on {_backend.DisplayName} at {_backend.BaseUrl.ToString().TrimEnd('/')}" +
            $"{(_settings.CatchAll ? " (catch-all)" : "")}, {_settings.Concurrency} at a time",
            ("worker_id", workerId), ("models", advertised.Select(m => m.Name).ToArray()), ("agent_version", AgentVersion), ("platform", Platform));

        using var finished = new CancellationTokenSource();
        using var onStop = stopping.Register(() =>
        {
            // The grace period runs from the stop itself, so it is running by the time the operator reads that it is.
            var graceOver = Task.Delay(_settings.GracePeriod, _time, finished.Token);
            _reporter.Info("stopping", RunningJobs == 0
                ? "stopping"
                : $"stopping: no new jobs; {RunningJobs} running job(s) get {_settings.GracePeriod.TotalSeconds:0.#} s to finish",
                ("running_jobs", RunningJobs));
            _ = AbortAfterGraceAsync(graceOver);
        });
        var upkeep = Task.WhenAll(HeartbeatLoopAsync(finished.Token), ModelsLoopAsync(finished.Token));
        WorkerId = workerId; // published once the loops wait on their clocks, so a test that sees it can move them
        await Task.WhenAll(Enumerable.Range(0, _settings.Concurrency).Select(_ => PollLoopAsync(stopping)));
        await finished.CancelAsync();
        await upkeep;
        _reporter.Info("stopped", "stopped");
        return 0;
    }

    private async Task<long> RegisterAsync(IReadOnlyList<WorkerModelEntry> models, CancellationToken cancellationToken) =>
        await _coordinator.RegisterAsync(_settings.Name, AgentVersion, Platform, models, _settings.CatchAll, cancellationToken);

    private async Task AbortAfterGraceAsync(Task graceOver)
    {
        try
        {
            await graceOver;
        }
        catch (OperationCanceledException)
        {
            return;
        }
        if (RunningJobs > 0) _reporter.Warn("grace_period_over", $"grace period over: failing {RunningJobs} running job(s) with \"{ShuttingDownMessage}\"");
        await _abortJobs.CancelAsync();
    }

    // ---- polling ----

    private async Task PollLoopAsync(CancellationToken stopping)
    {
        var failures = 0;
        var quickEmpties = 0;
        while (!stopping.IsCancellationRequested)
        {
            if (_backendDown && !await WaitForBackendAsync(stopping)) break;
            JobAssignment? job;
            var pollStarted = _time.GetTimestamp();
            CancellationTokenSource modelsChanged;
            IReadOnlyList<WorkerModelEntry> models;
            lock (_modelsLock)
            {
                modelsChanged = _modelsChanged;
                models = _advertised;
            }
            try
            {
                using var poll = CancellationTokenSource.CreateLinkedTokenSource(stopping, modelsChanged.Token);
                var families = models.Where(m => m.ServesFamily).Select(m => FamilyOf(m.Name)).Distinct();
                job = await _coordinator.NextJobAsync(models.Select(m => m.Name), families, _settings.CatchAll, poll.Token);
                if (failures > 0) _reporter.Info("coordinator_back", "the coordinator answers again");
                failures = 0;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                break;
            }
            catch (OperationCanceledException)
            {
                continue; // the model list changed: poll again declaring the new one
            }
            catch (CoordinatorException ex)
            {
                if (ex.Status == HttpStatusCode.Unauthorized && await TryRegisterAgainAsync(stopping)) continue;
                var delay = Backoff(failures++);
                _reporter.Warn("coordinator_error", $"{ex.Message}; retrying in {delay.TotalSeconds:0.#} s",
                    ("status", (int?)ex.Status), ("retry_in_ms", (long)delay.TotalMilliseconds));
                if (!await DelayAsync(delay, stopping)) break;
                continue;
            }
            if (job is null)
            {
                // 204: the window passed without a job; poll again at once. But a 204 that comes back at once, twice in
                // a row, is no window (a node shutting down answers so): back off rather than spin.
                if (_time.GetElapsedTime(pollStarted) >= QuickEmptyPoll) quickEmpties = 0;
                else if (quickEmpties++ > 0 && !await DelayAsync(Backoff(quickEmpties - 2), stopping)) break;
                continue;
            }
            quickEmpties = 0;
            try
            {
                await RunJobAsync(job, pollStarted);
            }
            catch (Exception ex)
            {
                // A bug in one job must not end this loop: the worker would sit idle while looking alive.
                _reporter.Error("job_error", $"job {job.JobId}: {ex.GetType().Name}: {ex.Message}", ("job_id", job.JobId));
            }
        }
    }

    /// <summary>After the backend stopped answering: take no jobs (each would fail) until it lists its models again.</summary>
    private async Task<bool> WaitForBackendAsync(CancellationToken stopping)
    {
        _reporter.Warn("backend_down", $"{_backend.UnreachableMessage} Taking no jobs until it answers.");
        for (var failures = 0; _backendDown; failures++)
        {
            if (!await DelayAsync(Backoff(failures), stopping)) return false;
            try
            {
                await _backend.ListModelsAsync(stopping);
                _backendDown = false;
                _reporter.Info("backend_back", $"{_backend.DisplayName} answers again");
            }
            catch (BackendUnreachableException)
            {
            }
            catch (BackendException)
            {
                _backendDown = false; // it answers; what it says is the next job's problem
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>A 401 on a poll: the key may have lost its worker binding (a reset coordinator database); register again.</summary>
    private async Task<bool> TryRegisterAgainAsync(CancellationToken stopping)
    {
        try
        {
            WorkerId = await RegisterAsync(AdvertisedModels, stopping);
            _reporter.Info("registered", $"registered again as worker {WorkerId}", ("worker_id", WorkerId));
            return true;
        }
        catch (CoordinatorException)
        {
            return false;
        }
    }

    // ---- one job ----

    private async Task RunJobAsync(JobAssignment job, long pollStarted)
    {
        var isImage = ImageBackend.IsImageJob(job.Params);
        var backend = isImage ? _images : _backend;
        if (backend is null)
        {
            await ReportFailureAsync(job, job.Model ?? "?", $"worker \"{_settings.Name}\" has no image backend for image jobs");
            return;
        }
        var model = ChooseModel(job);
        if (model is null)
        {
            await ReportFailureAsync(job, job.Model ?? "?", $"worker \"{_settings.Name}\" has no model to run {job.Model ?? "this job"} on");
            return;
        }
        var started = await TransitionAsync(job.JobId, "start", ct => _coordinator.StartAsync(job.JobId, ct));
        if (started is null) return; // the coordinator requeues it when its time is up
        if (started == false)
        {
            _reporter.Info("job_gone", $"job {job.JobId} is no longer ours (cancelled or timed out); skipped", ("job_id", job.JobId));
            return;
        }

        Interlocked.Increment(ref _running);
        try
        {
            var timeLimit = TimeSpan.FromSeconds(job.TimeoutSeconds is > 0 ? job.TimeoutSeconds.Value : 600);
            using var limit = new CancellationTokenSource(timeLimit, _time);
            using var ended = new CancellationTokenSource();
            using var jobToken = CancellationTokenSource.CreateLinkedTokenSource(limit.Token, _abortJobs.Token, ended.Token);
            _endSwitches[job.JobId] = ended;
            // An image is one piece, not text to follow.
            var chunks = _settings.StreamOutput && !isImage ? new ChunkStreamer(_coordinator, _reporter, job.JobId, ended, jobToken.Token) : null;
            var backendStarted = _time.GetTimestamp();
            BackendResult? result = null;
            string? failure;
            try
            {
                // Malformed messages fail the job before any attachment is downloaded for it.
                var messages = ChatMessage.ListFrom(job.Params);
                var attachments = await FetchAttachmentsAsync(job, jobToken.Token);
                var backendRequest = new BackendRequest(model, job.Prompt, GenerationParams.From(job.Params), attachments, messages);
                result = await backend.GenerateAsync(backendRequest, chunks is null ? null : chunks.Append, jobToken.Token);
                failure = string.IsNullOrWhiteSpace(result.Output) ? $"{backend.DisplayName} returned an empty response for {model}" : null;
            }
            catch (OperationCanceledException) when (ended.IsCancellationRequested)
            {
                failure = null; // said below, from the stream's state
            }
            catch (OperationCanceledException) when (_abortJobs.IsCancellationRequested)
            {
                failure = ShuttingDownMessage;
            }
            catch (OperationCanceledException) when (limit.IsCancellationRequested)
            {
                failure = $"time limit reached: {model} on {_backend.DisplayName} did not finish within the job's {timeLimit.TotalSeconds:0} s";
            }
            catch (BackendUnreachableException ex)
            {
                failure = ex.Message;
                _backendDown = true; // every further job would fail the same way
            }
            catch (BackendException ex)
            {
                failure = ex.Message;
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException)
            {
                failure = $"{_backend.DisplayName} broke off while generating with {model}: {ex.Message}";
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Whatever went wrong, the client hears about it now rather than at the job's timeout.
                failure = $"grid-worker failed to run the job: {ex.GetType().Name}: {ex.Message}";
            }
            var backendTime = _time.GetElapsedTime(backendStarted);
            // The rest of the output goes as the last chunk before the result, so the chunks joined are the output.
            _endSwitches.TryRemove(job.JobId, out _);
            if (_cancelledByCoordinator.TryRemove(job.JobId, out _))
            {
                if (chunks is not null) await chunks.FinishAsync(sendRest: false);
                _reporter.Info("job_gone", $"job {job.JobId} is no longer ours (the coordinator cancelled it); generation stopped, no result sent",
                    ("job_id", job.JobId));
                return;
            }
            if (chunks is not null && await chunks.FinishAsync(sendRest: failure is null && result is not null) == ChunkStreamState.JobEnded)
            {
                _reporter.Info("job_gone", $"job {job.JobId} is no longer ours ({chunks.EndedMessage}); generation stopped, no result sent",
                    ("job_id", job.JobId));
                return;
            }

            if (failure is not null || result is null)
            {
                await ReportFailureAsync(job, model, failure ?? "no result");
                return;
            }
            var durationMs = result.DurationMs ?? (long)backendTime.TotalMilliseconds;
            var request = new JobResultRequest(result.Output, result.InputTokens, result.OutputTokens, durationMs, result.ModelUsed);
            var accepted = await TransitionAsync(job.JobId, "result", ct => _coordinator.CompleteAsync(job.JobId, request, ct));
            if (accepted is null) return;
            if (accepted == false)
            {
                _reporter.Warn("result_refused", $"job {job.JobId}: the coordinator no longer expected its result (cancelled or timed out)", ("job_id", job.JobId));
                return;
            }
            ReportCompleted(job, result, durationMs, backendTime, _time.GetElapsedTime(pollStarted));
        }
        finally
        {
            _endSwitches.TryRemove(job.JobId, out _);
            _cancelledByCoordinator.TryRemove(job.JobId, out _);
            Interlocked.Decrement(ref _running);
        }
    }

    private void ReportCompleted(JobAssignment job, BackendResult result, long durationMs, TimeSpan backendTime, TimeSpan total)
    {
        var credits = Math.Round(result.OutputTokens / 1000.0, 4, MidpointRounding.AwayFromZero);
        var tokensPerSecond = durationMs > 0 ? Math.Round(result.OutputTokens / (durationMs / 1000.0), 1) : 0;
        // Everything but the backend: the poll that brought the job, start and result. What the grid costs a job.
        var coordinatorMs = Math.Max(0, (total - backendTime).TotalMilliseconds);
        _reporter.Info("job_completed",
            $"job {job.JobId} done: {result.ModelUsed}, {result.InputTokens?.ToString() ?? "?"} in / {result.OutputTokens} out tokens, " +
            $"{tokensPerSecond:0.0} tokens/s, +{credits:0.0000} credits ({durationMs / 1000.0:0.0} s)",
            ("job_id", job.JobId), ("model", result.ModelUsed), ("input_tokens", result.InputTokens), ("output_tokens", result.OutputTokens),
            ("tokens_per_second", tokensPerSecond), ("credits_earned", credits), ("duration_ms", durationMs),
            ("coordinator_ms", Math.Round(coordinatorMs, 3)));
    }

    private async Task ReportFailureAsync(JobAssignment job, string model, string message)
    {
        _reporter.Warn("job_failed", $"job {job.JobId} failed: {message}", ("job_id", job.JobId), ("model", model), ("error", message));
        await TransitionAsync(job.JobId, "failure", ct => _coordinator.FailAsync(job.JobId, message, ct));
    }

    /// <summary>
    /// Sends a start, result or failure, retrying while the coordinator is unreachable. True when done, false when the
    /// job is no longer this worker's (404/422), null when it could not be delivered (logged).
    /// </summary>
    private async Task<bool?> TransitionAsync(long jobId, string what, Func<CancellationToken, Task<bool>> send)
    {
        try
        {
            return await RetryAsync($"{what} of job {jobId}", send, TransitionAttempts, _giveUp.Token);
        }
        catch (Exception ex) when (ex is CoordinatorException or OperationCanceledException)
        {
            _reporter.Error("report_failed", $"job {jobId}: the {what} could not be delivered ({ex.Message})", ("job_id", jobId), ("what", what));
            return null;
        }
    }

    /// <summary>The local model to run a job on: its own model, else one of its family, else (catch-all) any.</summary>
    private string? ChooseModel(JobAssignment job)
    {
        var models = AdvertisedModels;
        if (job.Model is { } wanted && models.Any(m => m.Name == wanted)) return wanted;
        var family = job.ModelFamily ?? (job.Model is null ? null : FamilyOf(job.Model));
        var sameFamily = models.FirstOrDefault(m => family is not null && FamilyOf(m.Name) == family);
        if (sameFamily is not null && job.ModelMatch != "exact") return sameFamily.Name;
        return job.ModelMatch == "any" && models.Count > 0 ? models[0].Name : null;
    }

    private async Task<IReadOnlyList<Attachment>> FetchAttachmentsAsync(JobAssignment job, CancellationToken cancellationToken)
    {
        if (job.Blobs is not { Count: > 0 } blobs) return [];
        var attachments = new List<Attachment>();
        foreach (var blob in blobs)
        {
            if (string.IsNullOrEmpty(blob.Url)) throw new BackendException($"attachment {blob.Id} has no download URL");
            // Presigned URLs are absolute http(s); a relative one is the coordinator's own and takes the worker key.
            // (On Unix "/blobs/1" parses as an absolute file: URI, so the scheme is what tells them apart.)
            var presigned = Uri.TryCreate(blob.Url, UriKind.Absolute, out var url) && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps);
            if (!presigned && blob.Url.Contains("://", StringComparison.Ordinal)) throw new BackendException($"attachment {blob.Id} has an unsupported URL scheme");
            using var request = new HttpRequestMessage(HttpMethod.Get, presigned ? url : new Uri(_settings.Coordinator, blob.Url));
            if (!presigned) request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", _settings.ApiKey);
            HttpResponseMessage response;
            try
            {
                response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            }
            catch (HttpRequestException ex)
            {
                throw new BackendException($"attachment {blob.Id} could not be downloaded: {ex.Message}");
            }
            using var _ = response;
            if (!response.IsSuccessStatusCode) throw new BackendException($"attachment {blob.Id} could not be downloaded: {(int)response.StatusCode} {response.ReasonPhrase}");
            if (response.Content.Headers.ContentLength > MaxAttachmentBytes) throw new BackendException($"attachment {blob.Id} is larger than {MaxAttachmentBytes / 1024 / 1024} MB");
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            using var content = new MemoryStream();
            var buffer = new byte[81920];
            int read;
            while ((read = await body.ReadAsync(buffer, cancellationToken)) > 0)
            {
                if (content.Length + read > MaxAttachmentBytes) throw new BackendException($"attachment {blob.Id} is larger than {MaxAttachmentBytes / 1024 / 1024} MB");
                await content.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
            }
            attachments.Add(new Attachment(blob.Id, blob.Type ?? "image", content.ToArray(), response.Content.Headers.ContentType?.MediaType));
        }
        return attachments;
    }

    // ---- staying alive ----

    /// <summary>While jobs run the worker does not poll, so it says it is alive; the coordinator's offline window is 90 s.</summary>
    private async Task HeartbeatLoopAsync(CancellationToken finished)
    {
        while (await DelayAsync(_settings.HeartbeatInterval, finished))
        {
            if (RunningJobs == 0) continue; // polls count as heartbeats
            try
            {
                var cancelled = await _coordinator.HeartbeatAsync(finished);
                _reporter.Info("heartbeat", $"heartbeat ({RunningJobs} job(s) running)", ("running_jobs", RunningJobs));
                foreach (var jobId in cancelled)
                {
                    if (!_endSwitches.TryGetValue(jobId, out var ended)) continue;
                    _cancelledByCoordinator[jobId] = 0;
                    try
                    {
                        await ended.CancelAsync();
                    }
                    catch (ObjectDisposedException)
                    {
                        // The job finished meanwhile.
                    }
                }
            }
            catch (CoordinatorException ex)
            {
                _reporter.Warn("heartbeat_failed", $"heartbeat failed: {ex.Message}");
            }
            catch (OperationCanceledException) when (finished.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>Follows the backend's model list and tells the coordinator when it changes.</summary>
    private async Task ModelsLoopAsync(CancellationToken finished)
    {
        while (await DelayAsync(_settings.ModelsRefreshInterval, finished))
        {
            try
            {
                var advertised = Advertise(await _backend.ListModelsAsync(finished));
                var current = AdvertisedModels;
                if (advertised.SequenceEqual(current)) continue;
                await _coordinator.UpdateModelsAsync(advertised, finished);
                // Said before the polls switch over, so whoever sees the new list has the line too.
                _reporter.Info("models_changed", $"models changed: now serving {(advertised.Count == 0 ? "nothing" : string.Join(", ", advertised.Select(m => m.Name)))}",
                    ("models", advertised.Select(m => m.Name).ToArray()));
                CancellationTokenSource changed;
                lock (_modelsLock)
                {
                    _advertised = advertised;
                    changed = _modelsChanged;
                    _modelsChanged = new CancellationTokenSource();
                }
                await changed.CancelAsync(); // parked polls declared the old list
                changed.Dispose();
            }
            catch (Exception ex) when (ex is BackendException or BackendUnreachableException or CoordinatorException or HttpRequestException)
            {
                _reporter.Warn("models_refresh_failed", $"could not refresh the model list: {ex.Message}");
            }
            catch (OperationCanceledException) when (finished.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>
    /// The backend's models to serve, and the image models as <c>image:&lt;model&gt;</c>, each taking the family's jobs.
    /// A text model named in the image family is left out: it would be sent image jobs.
    /// </summary>
    private List<WorkerModelEntry> Advertise(IReadOnlyList<string> available) =>
        available
            .Where(m => _settings.Models is null || _settings.Models.Contains(m, StringComparer.Ordinal))
            .Where(m => FamilyOf(m) != ImageBackend.Family)
            .Order(StringComparer.Ordinal)
            .Select(m => new WorkerModelEntry(m, _settings.ServesFamilyOf(m)))
            .Concat((_images?.Models ?? []).Select(m => new WorkerModelEntry(ImageBackend.AdvertisedName(m), ServesFamily: true)))
            .ToList();

    /// <summary>The family is the name before the tag: <c>llama3:8b</c> → <c>llama3</c> (as the coordinator computes it).</summary>
    public static string FamilyOf(string model)
    {
        var colon = model.LastIndexOf(':');
        return colon > 0 ? model[..colon] : model;
    }

    // ---- retries ----

    /// <summary>Exponential backoff with jitter: the n-th wait is between half and all of min(max, initial × 2ⁿ).</summary>
    public TimeSpan Backoff(int failures)
    {
        var ceiling = Math.Min(_settings.RetryMaxDelay.TotalMilliseconds, _settings.RetryInitialDelay.TotalMilliseconds * Math.Pow(2, Math.Min(failures, 30)));
        return TimeSpan.FromMilliseconds(ceiling / 2 + Random.Shared.NextDouble() * ceiling / 2);
    }

    private async Task<T> RetryAsync<T>(string what, Func<CancellationToken, Task<T>> action, int attempts, CancellationToken cancellationToken)
    {
        for (var failures = 0; ; failures++)
        {
            try
            {
                return await action(cancellationToken);
            }
            catch (CoordinatorException ex) when (ex.IsTransient && failures + 1 < attempts)
            {
                var delay = Backoff(failures);
                _reporter.Warn("coordinator_error", $"{what}: {ex.Message}; retrying in {delay.TotalSeconds:0.#} s",
                    ("status", (int?)ex.Status), ("retry_in_ms", (long)delay.TotalMilliseconds));
                if (!await DelayAsync(delay, cancellationToken)) throw new OperationCanceledException(cancellationToken);
            }
        }
    }

    /// <summary>Waits on the worker's clock; false when cancelled instead.</summary>
    private async Task<bool> DelayAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(delay, _time, cancellationToken);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
