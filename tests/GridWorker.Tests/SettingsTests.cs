namespace GridWorker.Tests;

public class SettingsTests
{
    private static Func<string, string?> Env(params (string Name, string Value)[] values) =>
        name => values.FirstOrDefault(v => v.Name == name).Value ?? (name == "HOME" ? "/nonexistent-home" : null);

    [Theory]
    [InlineData("http://host:3000", "http://host:3000/api/v1/")]
    [InlineData("http://host:3000/", "http://host:3000/api/v1/")]
    [InlineData("http://host:3000/api/v1", "http://host:3000/api/v1/")]
    [InlineData("https://grid.example/api/v1/", "https://grid.example/api/v1/")]
    [InlineData("https://grid.example/prefix", "https://grid.example/prefix/api/v1/")]
    public void CoordinatorUrl_WithOrWithoutApiPath(string given, string expected) =>
        Assert.Equal(expected, WorkerSettings.NormalizeCoordinator(given).ToString());

    [Fact]
    public void Defaults_AreOllamaOnLocalhost_OneJobAtATime_AllModelsServeTheirFamily()
    {
        var settings = WorkerSettings.Parse(["--coordinator", "http://h:3000", "--api-key", "vk_live_x"], Env()).Settings!;
        Assert.Equal(BackendKind.Ollama, settings.Backend);
        Assert.Equal(new Uri("http://127.0.0.1:11434"), settings.BackendUrl);
        Assert.Equal(Environment.MachineName, settings.Name);
        Assert.Equal(1, settings.Concurrency);
        Assert.Null(settings.Models);
        Assert.True(settings.ServesFamilyOf("llama3:8b"));
        Assert.False(settings.CatchAll);
        Assert.False(settings.JsonOutput);
        Assert.Equal(TimeSpan.FromSeconds(30), settings.HeartbeatInterval);
        Assert.True(settings.StreamOutput);
    }

    [Fact]
    public void NoStream_ComesFromTheFlagTheEnvironmentOrTheConfigFile()
    {
        string[] required = ["--coordinator", "http://h:3000", "--api-key", "vk_live_x"];
        Assert.False(WorkerSettings.Parse([.. required, "--no-stream"], Env()).Settings!.StreamOutput);
        Assert.False(WorkerSettings.Parse(required, Env(("GRID_WORKER_NO_STREAM", "true"))).Settings!.StreamOutput);
        Assert.True(WorkerSettings.Parse([.. required, "--no-stream=false"], Env(("GRID_WORKER_NO_STREAM", "true"))).Settings!.StreamOutput);
        var config = Path.GetTempFileName();
        try
        {
            File.WriteAllText(config, """{"no-stream": true}""");
            Assert.False(WorkerSettings.Parse([.. required, "--config", config], Env()).Settings!.StreamOutput);
        }
        finally
        {
            File.Delete(config);
        }
        Assert.Contains("--no-stream", WorkerSettings.HelpText, StringComparison.Ordinal);
    }

    [Fact]
    public void FlagsBeatEnvironment_WhichBeatsTheConfigFile()
    {
        var config = Path.GetTempFileName();
        try
        {
            File.WriteAllText(config, """
                {
                  // comments are allowed
                  "coordinator": "http://from-file:3000",
                  "api-key": "vk_file",
                  "name": "file-name",
                  "models": ["llama3:8b", "mistral:7b"],
                  "serves_family": "mistral:7b",
                  "concurrency": 3,
                  "catch-all": true,
                }
                """);
            var settings = WorkerSettings.Parse(
                ["--config", config, "--name", "flag-name", "--backend=openai", "--json"],
                Env(("GRID_WORKER_NAME", "env-name"), ("GRID_WORKER_API_KEY", "vk_env"), ("GRID_WORKER_CONCURRENCY", "2"))).Settings!;
            Assert.Equal("flag-name", settings.Name);
            Assert.Equal("vk_env", settings.ApiKey);
            Assert.Equal(2, settings.Concurrency);
            Assert.Equal(new Uri("http://from-file:3000/api/v1/"), settings.Coordinator);
            Assert.Equal(["llama3:8b", "mistral:7b"], settings.Models);
            Assert.True(settings.ServesFamilyOf("mistral:7b"));
            Assert.False(settings.ServesFamilyOf("llama3:8b"));
            Assert.True(settings.CatchAll);
            Assert.True(settings.JsonOutput);
            Assert.Equal(BackendKind.OpenAi, settings.Backend);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public void ConfigFile_IsFoundInTheUsersConfigFolder()
    {
        var home = Directory.CreateTempSubdirectory();
        try
        {
            Directory.CreateDirectory(Path.Combine(home.FullName, ".config", "grid-worker"));
            File.WriteAllText(Path.Combine(home.FullName, ".config", "grid-worker", "config.json"), """{"coordinator": "http://cfg:1", "api_key": "vk_cfg"}""");
            var settings = WorkerSettings.Parse([], name => name == "HOME" ? home.FullName : null).Settings!;
            Assert.Equal("vk_cfg", settings.ApiKey);
            Assert.Equal(new Uri("http://cfg:1/api/v1/"), settings.Coordinator);
        }
        finally
        {
            home.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData(new[] { "--api-key", "k" }, "the coordinator URL is missing: pass --coordinator http://host:3000 or set GRID_WORKER_COORDINATOR")]
    [InlineData(new[] { "--coordinator", "http://h" }, "the API key is missing: pass --api-key or set GRID_WORKER_API_KEY")]
    [InlineData(new[] { "--coordinator", "ftp://h", "--api-key", "k" }, "--coordinator must be an http(s) URL")]
    [InlineData(new[] { "--coordinator", "http://h", "--api-key", "k", "--backend", "vllm" }, "--backend must be ollama or openai, not 'vllm'")]
    [InlineData(new[] { "--coordinator", "http://h", "--api-key", "k", "--concurrency", "0" }, "--concurrency must be a whole number from 1 to 64")]
    [InlineData(new[] { "--coordinator", "http://h", "--api-key", "k", "--heartbeat-interval", "90" }, "--heartbeat-interval must stay under the coordinator's 90 s offline window")]
    [InlineData(new[] { "--coordinator", "http://h", "--api-key", "k", "--port", "1" }, "unknown option '--port'")]
    [InlineData(new[] { "--coordinator", "http://h", "--api-key", "k", "--config", "/nonexistent/grid.json" }, "config file /nonexistent/grid.json does not exist")]
    public void BadSettings_SayWhatToFix(string[] args, string message)
    {
        var error = Assert.Throws<SettingsException>(() => WorkerSettings.Parse(args, Env()));
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_ExplainsEveryFlagAndItsEnvironmentVariable()
    {
        Assert.Equal("help", WorkerSettings.Parse(["--help"], Env()).Command);
        Assert.Equal("status", WorkerSettings.Parse(["status", "--coordinator", "http://h", "--api-key", "k"], Env()).Command);
        var help = WorkerSettings.HelpText;
        foreach (var (flag, env) in new[]
        {
            ("--coordinator", "GRID_WORKER_COORDINATOR"), ("--api-key", "GRID_WORKER_API_KEY"), ("--name", "GRID_WORKER_NAME"),
            ("--backend", "GRID_WORKER_BACKEND"), ("--backend-url", "GRID_WORKER_BACKEND_URL"), ("--models", "GRID_WORKER_MODELS"),
            ("--serves-family", "GRID_WORKER_SERVES_FAMILY"), ("--catch-all", "GRID_WORKER_CATCH_ALL"), ("--concurrency", "GRID_WORKER_CONCURRENCY"),
            ("--json", "GRID_WORKER_JSON"), ("--grace-period", "GRID_WORKER_GRACE_PERIOD"), ("--config", "GRID_WORKER_CONFIG"),
        })
        {
            Assert.Contains(flag + " ", help, StringComparison.Ordinal);
            Assert.Contains("env " + env, help, StringComparison.Ordinal);
        }
        Assert.Contains("grid-worker status", help, StringComparison.Ordinal);
    }
}
