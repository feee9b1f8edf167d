using GridWorker.Tests.Fakes;
using GridWorker.Tests.Infrastructure;

namespace GridWorker.Tests;

/// <summary>Jobs in chat form (<c>params.messages</c>, from the coordinator's OpenAI-compatible front door) reach the backend as they are.</summary>
public sealed class ChatFormTests
{
    [Theory]
    [InlineData("ollama")]
    [InlineData("openai")]
    public async Task AssignmentWithMessages_SendsThemToTheBackend_WithItsParams(string kind)
    {
        await using var coordinator = await FakeCoordinator.StartAsync();
        await using FakeBackend backend = kind == "ollama" ? await FakeOllama.StartAsync("llama3:8b") : await FakeOpenAi.StartAsync("llama3:8b");
        var messages = new object[]
        {
            new { role = "system", content = "You are terse." },
            new { role = "user", content = "Name a colour." },
            new { role = "assistant", content = "Red." },
            new { role = "user", content = "Another." },
        };
        coordinator.Enqueue(new
        {
            job_id = 21, model = "llama3:8b", model_match = "exact", prompt = "system: You are terse.\nuser: Name a colour.\nassistant: Red.\nuser: Another.",
            blobs = Array.Empty<object>(), timeout_seconds = 600, attempt = 1,
            @params = new { messages, max_tokens = 16, temperature = 0.1, stop = new[] { "\n" } },
        });
        await using var run = await AgentRun.StartRegisteredAsync(AgentRun.SettingsFor(coordinator.BaseUrl, "vk_live_worker", backend.Info()));

        var report = await coordinator.NextReportAsync();
        Assert.True(report.Kind == "result", report.Body + "\n" + run.Output);
        var request = await backend.NextRequestAsync();
        Assert.Equal(
            System.Text.Json.JsonSerializer.Serialize(messages),
            System.Text.Json.JsonSerializer.Serialize(request.GetProperty("messages").EnumerateArray()
                .Select(m => new { role = m.GetProperty("role").GetString(), content = m.GetProperty("content").GetString() })));
        var maxTokens = kind == "ollama" ? request.GetProperty("options").GetProperty("num_predict") : request.GetProperty("max_tokens");
        Assert.Equal(16, maxTokens.GetInt32());
    }
}
