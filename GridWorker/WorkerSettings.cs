using System.Globalization;
using System.Text;
using System.Text.Json;

namespace GridWorker;

/// <summary>Which kind of local inference server the worker drives.</summary>
public enum BackendKind
{
    /// <summary>Ollama's native API: <c>/api/tags</c> and <c>/api/chat</c>.</summary>
    Ollama,

    /// <summary>Any OpenAI-compatible server (llama.cpp server, vLLM, LM Studio): <c>/v1/models</c> and <c>/v1/chat/completions</c>.</summary>
    OpenAi,
}

/// <summary>Everything the agent is told. Tests build one directly; <see cref="Parse"/> builds it from flags, environment and a config file.</summary>
public sealed record WorkerSettings
{
    /// <summary>Never the API keys: a record would print every property.</summary>
    public override string ToString() => $"WorkerSettings {{ Coordinator = {Coordinator}, Name = {Name}, Backend = {Backend} at {BackendUrl} }}";

    public const string DefaultBackendUrl = "http://127.0.0.1:11434";

    /// <summary>The coordinator's API root, always ending in <c>/api/v1/</c>.</summary>
    public required Uri Coordinator { get; init; }

    public required string ApiKey { get; init; }

    /// <summary>Default: the host name.</summary>
    public string Name { get; init; } = Environment.MachineName;

    public BackendKind Backend { get; init; } = BackendKind.Ollama;

    public Uri BackendUrl { get; init; } = new(DefaultBackendUrl);

    /// <summary>Bearer key for an OpenAI-compatible server that wants one. Default: none.</summary>
    public string? BackendApiKey { get; init; }

    /// <summary>An OpenAI-compatible image server (<c>POST /v1/images/generations</c>) for image jobs. Default: none (no image jobs).</summary>
    public Uri? ImageUrl { get; init; }

    /// <summary>The image server's models this worker serves, advertised as <c>image:&lt;model&gt;</c>. Required with <see cref="ImageUrl"/>.</summary>
    public IReadOnlyList<string> ImageModels { get; init; } = [];

    /// <summary>Bearer key for the image server. Default: none.</summary>
    public string? ImageApiKey { get; init; }

    /// <summary>Models to serve. Default (null): every model the backend lists.</summary>
    public IReadOnlyList<string>? Models { get; init; }

    /// <summary>Models advertised with <c>serves_family</c>. Default (null): all of them.</summary>
    public IReadOnlyList<string>? ServesFamily { get; init; }

    /// <summary>Accept <c>model_match: any</c> jobs for models this worker does not have. Default: false.</summary>
    public bool CatchAll { get; init; }

    /// <summary>Jobs run at once. Default: 1.</summary>
    public int Concurrency { get; init; } = 1;

    /// <summary>Structured logs, one JSON object a line. Default: human-readable lines.</summary>
    public bool JsonOutput { get; init; }

    /// <summary>
    /// Send each job's output to the coordinator in chunks while it is generated, so its client reads it as it comes.
    /// Default: true (<c>--no-stream</c> sends the output with the result only).
    /// </summary>
    public bool StreamOutput { get; init; } = true;

    /// <summary>How often a worker with a job in hand tells the coordinator it is alive. Default: 30 s (the offline window is 90 s).</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How often the backend's model list is checked for changes. Default: 60 s.</summary>
    public TimeSpan ModelsRefreshInterval { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long running jobs may finish after Ctrl-C or SIGTERM before they are failed. Default: 30 s.</summary>
    public TimeSpan GracePeriod { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>First wait after a coordinator error; it doubles (with jitter) on each further error. Default: 1 s.</summary>
    public TimeSpan RetryInitialDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest wait between attempts to reach the coordinator. Default: 60 s.</summary>
    public TimeSpan RetryMaxDelay { get; init; } = TimeSpan.FromSeconds(60);

    public bool ServesFamilyOf(string model) => ServesFamily is null || ServesFamily.Contains(model, StringComparer.Ordinal);

    /// <summary>Accepts <c>http://host:3000</c> and <c>http://host:3000/api/v1</c> alike; answers the API root with a trailing slash.</summary>
    public static Uri NormalizeCoordinator(string text)
    {
        if (!Uri.TryCreate(text.Trim(), UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new SettingsException($"--coordinator must be an http(s) URL such as http://host:3000, not '{text}'");
        }
        var path = uri.AbsolutePath.TrimEnd('/');
        if (!path.EndsWith("/api/v1", StringComparison.OrdinalIgnoreCase)) path += "/api/v1";
        return new UriBuilder(uri) { Path = path + "/", Query = "" }.Uri;
    }

    // ---- command line, environment and config file ----

    private sealed record Option(string Flag, string Env, string Help, string? Default, bool IsSwitch = false)
    {
        public string Key => Flag[2..];
    }

    private static readonly Option[] Options =
    [
        new("--coordinator", "GRID_WORKER_COORDINATOR", "Coordinator URL; http://host:3000 and http://host:3000/api/v1 both work", null),
        new("--api-key", "GRID_WORKER_API_KEY", "API key of your account; registration binds it to this worker", null),
        new("--name", "GRID_WORKER_NAME", "Worker name shown on the grid", "the host name"),
        new("--backend", "GRID_WORKER_BACKEND", "ollama, or openai for any OpenAI-compatible server (llama.cpp server, vLLM, LM Studio)", "ollama"),
        new("--backend-url", "GRID_WORKER_BACKEND_URL", "Where the backend listens", DefaultBackendUrl),
        new("--backend-api-key", "GRID_WORKER_BACKEND_API_KEY", "Bearer key for an OpenAI-compatible server that needs one", "none"),
        new("--image-url", "GRID_WORKER_IMAGE_URL", "An OpenAI-compatible image server (POST /v1/images/generations) for the grid's image jobs", "none"),
        new("--image-models", "GRID_WORKER_IMAGE_MODELS", "Comma-separated models of the image server to serve (needed with --image-url)", "none"),
        new("--image-api-key", "GRID_WORKER_IMAGE_API_KEY", "Bearer key for the image server", "none"),
        new("--models", "GRID_WORKER_MODELS", "Comma-separated models to serve", "every model the backend lists"),
        new("--serves-family", "GRID_WORKER_SERVES_FAMILY", "Models that also take jobs for their family (llama3:70b for 'llama3'): all, none, or a comma-separated list", "all"),
        new("--catch-all", "GRID_WORKER_CATCH_ALL", "Also take model_match=any jobs for models you do not have (run on one of yours)", "false", IsSwitch: true),
        new("--concurrency", "GRID_WORKER_CONCURRENCY", "How many jobs to run at once", "1"),
        new("--no-stream", "GRID_WORKER_NO_STREAM", "Send each job's output with its result only, not in chunks while it is generated", "false", IsSwitch: true),
        new("--json", "GRID_WORKER_JSON", "Structured logs: one JSON object per line", "false", IsSwitch: true),
        new("--heartbeat-interval", "GRID_WORKER_HEARTBEAT_INTERVAL", "Seconds between heartbeats while a job runs (must stay under the coordinator's 90 s offline window)", "30"),
        new("--models-refresh", "GRID_WORKER_MODELS_REFRESH", "Seconds between checks of the backend's model list", "60"),
        new("--grace-period", "GRID_WORKER_GRACE_PERIOD", "Seconds running jobs may finish after Ctrl-C/SIGTERM before they are failed", "30"),
        new("--retry-max", "GRID_WORKER_RETRY_MAX", "Longest wait in seconds between attempts to reach the coordinator", "60"),
        new("--config", "GRID_WORKER_CONFIG", "JSON config file whose keys are the flag names without dashes, e.g. {\"coordinator\": \"…\", \"api-key\": \"…\"}", "~/.config/grid-worker/config.json if it exists"),
    ];

    public static string HelpText
    {
        get
        {
            var text = new StringBuilder();
            text.AppendLine("grid-worker: serve jobs from a Coordinator grid on your own Ollama or OpenAI-compatible server.");
            text.AppendLine();
            text.AppendLine("Usage:");
            text.AppendLine("  grid-worker [options]          register and serve jobs until Ctrl-C");
            text.AppendLine("  grid-worker status [options]   show this worker's credits (needs --coordinator and --api-key)");
            text.AppendLine();
            text.AppendLine("Options (a flag wins over its environment variable, which wins over the config file):");
            foreach (var option in Options)
            {
                var flag = option.IsSwitch ? option.Flag : option.Flag + " <value>";
                text.AppendLine($"  {flag,-30} {option.Help}");
                text.AppendLine($"  {"",-30} env {option.Env}{(option.Default is null ? "; required" : "; default: " + option.Default)}");
            }
            text.AppendLine($"  {"-h, --help",-30} Show this help");
            text.AppendLine($"  {"--version",-30} Show the version");
            return text.ToString();
        }
    }

    /// <summary>
    /// Reads the settings. Precedence: flag, then environment variable, then config file, then the default.
    /// Throws <see cref="SettingsException"/> with a message that says what to fix.
    /// </summary>
    public static ParsedCommand Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var command = "run";
        var flags = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg is "-h" or "--help" or "help") return new ParsedCommand("help", null);
            if (arg is "--version") return new ParsedCommand("version", null);
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                if (i == 0 && arg is "run" or "status") { command = arg; continue; }
                throw new SettingsException($"unexpected argument '{arg}' (see grid-worker --help)");
            }
            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            var flag = equals > 0 ? arg[..equals] : arg;
            var option = Options.FirstOrDefault(o => o.Flag == flag)
                ?? throw new SettingsException($"unknown option '{flag}' (see grid-worker --help)");
            string value;
            if (equals > 0) value = arg[(equals + 1)..];
            else if (option.IsSwitch) value = "true";
            else if (i + 1 < args.Count) value = args[++i];
            else throw new SettingsException($"{flag} needs a value");
            flags[option.Key] = value;
        }

        var configPath = flags.GetValueOrDefault("config") ?? environment("GRID_WORKER_CONFIG");
        var config = ReadConfigFile(configPath, explicitPath: configPath is not null, environment);

        string? Value(string key)
        {
            var option = Options.First(o => o.Key == key);
            return flags.GetValueOrDefault(key) ?? NonEmpty(environment(option.Env)) ?? config.GetValueOrDefault(key);
        }

        var coordinatorText = Value("coordinator")
            ?? throw new SettingsException("the coordinator URL is missing: pass --coordinator http://host:3000 or set GRID_WORKER_COORDINATOR");
        var coordinator = NormalizeCoordinator(coordinatorText);
        var apiKey = Value("api-key");
        if (string.IsNullOrWhiteSpace(apiKey))
        {
            throw new SettingsException("the API key is missing: pass --api-key or set GRID_WORKER_API_KEY (create one with POST /api/v1/keys)");
        }
        var backend = (Value("backend") ?? "ollama").ToLowerInvariant() switch
        {
            "ollama" => BackendKind.Ollama,
            "openai" => BackendKind.OpenAi,
            var other => throw new SettingsException($"--backend must be ollama or openai, not '{other}'"),
        };
        var backendUrlText = Value("backend-url") ?? DefaultBackendUrl;
        if (!Uri.TryCreate(backendUrlText, UriKind.Absolute, out var backendUrl) || (backendUrl.Scheme != Uri.UriSchemeHttp && backendUrl.Scheme != Uri.UriSchemeHttps))
        {
            throw new SettingsException($"--backend-url must be an http(s) URL such as {DefaultBackendUrl}, not '{backendUrlText}'");
        }
        Uri? imageUrl = null;
        if (NonEmpty(Value("image-url")) is { } imageUrlText && (!Uri.TryCreate(imageUrlText, UriKind.Absolute, out imageUrl) || (imageUrl.Scheme != Uri.UriSchemeHttp && imageUrl.Scheme != Uri.UriSchemeHttps)))
        {
            throw new SettingsException($"--image-url must be an http(s) URL such as http://127.0.0.1:8080, not '{imageUrlText}'");
        }
        var imageModels = Value("image-models") is { } imageModelsText ? List(imageModelsText) : [];
        if (imageUrl is not null && imageModels.Count == 0)
        {
            throw new SettingsException("--image-url needs --image-models: name the image server's models to serve (e.g. --image-models sd-turbo)");
        }
        if (imageUrl is null && imageModels.Count > 0) throw new SettingsException("--image-models needs --image-url: where the image server listens");
        var servesFamilyText = Value("serves-family") ?? "all";
        IReadOnlyList<string>? servesFamily = servesFamilyText.Trim().ToLowerInvariant() switch
        {
            "all" => null,
            "none" or "" => [],
            _ => List(servesFamilyText),
        };
        var heartbeat = Seconds("heartbeat-interval", Value("heartbeat-interval") ?? "30");
        if (heartbeat >= TimeSpan.FromSeconds(90))
        {
            throw new SettingsException("--heartbeat-interval must stay under the coordinator's 90 s offline window");
        }

        var settings = new WorkerSettings
        {
            Coordinator = coordinator,
            ApiKey = apiKey.Trim(),
            Name = NonEmpty(Value("name"))?.Trim() ?? Environment.MachineName,
            Backend = backend,
            BackendUrl = backendUrl,
            BackendApiKey = NonEmpty(Value("backend-api-key")),
            ImageUrl = imageUrl,
            ImageModels = imageModels,
            ImageApiKey = NonEmpty(Value("image-api-key")),
            Models = Value("models") is { } models && List(models).Count > 0 ? List(models) : null,
            ServesFamily = servesFamily,
            CatchAll = Bool("catch-all", Value("catch-all")),
            Concurrency = Integer("concurrency", Value("concurrency") ?? "1", 1, 64),
            StreamOutput = !Bool("no-stream", Value("no-stream")),
            JsonOutput = Bool("json", Value("json")),
            HeartbeatInterval = heartbeat,
            ModelsRefreshInterval = Seconds("models-refresh", Value("models-refresh") ?? "60"),
            GracePeriod = Seconds("grace-period", Value("grace-period") ?? "30", allowZero: true),
            RetryMaxDelay = Seconds("retry-max", Value("retry-max") ?? "60"),
        };
        return new ParsedCommand(command, settings);
    }

    private static Dictionary<string, string> ReadConfigFile(string? path, bool explicitPath, Func<string, string?> environment)
    {
        if (path is null)
        {
            var home = environment("HOME") ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            var configHome = NonEmpty(environment("XDG_CONFIG_HOME")) ?? Path.Combine(home, ".config");
            path = Path.Combine(configHome, "grid-worker", "config.json");
        }
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(path))
        {
            if (explicitPath) throw new SettingsException($"config file {path} does not exist");
            return values;
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new SettingsException($"config file {path} is not valid JSON: {ex.Message}");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw new SettingsException($"config file {path} must hold a JSON object");
            foreach (var property in document.RootElement.EnumerateObject())
            {
                var key = property.Name.Replace('_', '-');
                if (key == "config" || !Options.Any(o => o.Key == key))
                {
                    throw new SettingsException($"config file {path}: unknown setting '{property.Name}' (the keys are the flag names without dashes)");
                }
                values[key] = property.Value.ValueKind switch
                {
                    JsonValueKind.String => property.Value.GetString()!,
                    JsonValueKind.Array => string.Join(',', property.Value.EnumerateArray().Select(e => e.ToString())),
                    _ => property.Value.GetRawText(),
                };
            }
        }
        return values;
    }

    private static string? NonEmpty(string? text) => string.IsNullOrWhiteSpace(text) ? null : text;

    private static List<string> List(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct(StringComparer.Ordinal).ToList();

    private static bool Bool(string key, string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "false" or "0" or "no" => false,
        "true" or "1" or "yes" => true,
        _ => throw new SettingsException($"--{key} must be true or false, not '{text}'"),
    };

    private static int Integer(string key, string text, int min, int max) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : throw new SettingsException($"--{key} must be a whole number from {min} to {max}, not '{text}'");

    private static TimeSpan Seconds(string key, string text, bool allowZero = false) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && (value > 0 || (allowZero && value == 0)) && value <= 86_400
            ? TimeSpan.FromSeconds(value)
            : throw new SettingsException($"--{key} must be a number of seconds{(allowZero ? "" : " above 0")}, not '{text}'");
}

/// <summary>What the command line asked for: <c>run</c>, <c>status</c>, <c>help</c> or <c>version</c>, and the settings.</summary>
public sealed record ParsedCommand(string Command, WorkerSettings? Settings);

/// <summary>A setting is missing or wrong; the message says what to do.</summary>
public sealed class SettingsException(string message) : Exception(message);
