using System.Text;
using System.Text.Json;
using GridWorker.Backends;
using GridWorker.Tests.Fakes;

namespace GridWorker.Tests;

/// <summary>The production backend clients against fakes that speak Ollama's and OpenAI's documented wire formats.</summary>
public sealed class BackendTests : IAsyncLifetime
{
    private readonly HttpClient _http = Program.CreateHttpClient();
    private FakeOllama _ollama = null!;
    private FakeOpenAi _openAi = null!;

    private static readonly GenerationParams AllParams = new(MaxTokens: 64, Temperature: 0.2, TopP: 0.9, Stop: ["\n\n", "END"], Seed: 42);
    private static readonly Attachment Png = new(7, "image", [0x89, 0x50, 0x4E, 0x47], "image/png");

    public async Task InitializeAsync()
    {
        _ollama = await FakeOllama.StartAsync("llama3:8b", "mistral:7b");
        _openAi = await FakeOpenAi.StartAsync("qwen2.5:14b");
    }

    public async Task DisposeAsync()
    {
        await _ollama.DisposeAsync();
        await _openAi.DisposeAsync();
        _http.Dispose();
    }

    [Fact]
    public async Task Ollama_ListsTags_AndStreamsTheAnswerWithItsCounts()
    {
        var backend = new OllamaBackend(_http, _ollama.BaseUrl);
        Assert.Equal(["llama3:8b", "mistral:7b"], await backend.ListModelsAsync(default));

        _ollama.Reply = _ => new FakeReply { Pieces = ["Hel", "lo", " world"], PromptTokens = 21, OutputTokens = 3, DurationMs = 2345 };
        var result = await backend.GenerateAsync(new BackendRequest("llama3:8b", "Say hello", GenerationParams.None, []), null, default);

        Assert.Equal(new BackendResult("Hello world", 21, 3, "llama3:8b", 2345), result);
        var request = await _ollama.NextRequestAsync();
        Assert.True(request.GetProperty("stream").GetBoolean());
        var message = Assert.Single(request.GetProperty("messages").EnumerateArray());
        Assert.Equal("user", message.GetProperty("role").GetString());
        Assert.Equal("Say hello", message.GetProperty("content").GetString());
        Assert.False(request.TryGetProperty("options", out _));
        Assert.False(message.TryGetProperty("images", out _));
    }

    [Fact]
    public async Task Ollama_GetsParamsAsOptions_AndImagesAsBase64()
    {
        var backend = new OllamaBackend(_http, _ollama.BaseUrl);
        var document = new Attachment(8, "document", Encoding.UTF8.GetBytes("quarterly numbers"), "text/plain");
        await backend.GenerateAsync(new BackendRequest("llama3:8b", "Describe", AllParams, [Png, document]), null, default);

        var request = await _ollama.NextRequestAsync();
        var options = request.GetProperty("options");
        Assert.Equal(0.2, options.GetProperty("temperature").GetDouble());
        Assert.Equal(0.9, options.GetProperty("top_p").GetDouble());
        Assert.Equal(64, options.GetProperty("num_predict").GetInt32());
        Assert.Equal(["\n\n", "END"], options.GetProperty("stop").EnumerateArray().Select(s => s.GetString()));
        Assert.Equal(42, options.GetProperty("seed").GetInt64());
        var message = request.GetProperty("messages")[0];
        Assert.Equal([Convert.ToBase64String(Png.Content)], message.GetProperty("images").EnumerateArray().Select(i => i.GetString()));
        Assert.Contains("quarterly numbers", message.GetProperty("content").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ollama_ErrorsCarryTheServersMessage()
    {
        var backend = new OllamaBackend(_http, _ollama.BaseUrl);
        _ollama.Reply = _ => new FakeReply { ErrorStatus = 404 };
        var refused = await Assert.ThrowsAsync<BackendException>(() => backend.GenerateAsync(new BackendRequest("gone:1b", "p", GenerationParams.None, []), null, default));
        Assert.Equal("Ollama answered 404 for gone:1b: model \"gone:1b\" not found, try pulling it first", refused.Message);

        _ollama.Reply = _ => new FakeReply { StreamError = "CUDA error: out of memory" };
        var broken = await Assert.ThrowsAsync<BackendException>(() => backend.GenerateAsync(new BackendRequest("llama3:8b", "p", GenerationParams.None, []), null, default));
        Assert.Equal("Ollama failed while generating with llama3:8b: CUDA error: out of memory", broken.Message);
    }

    [Fact]
    public async Task Ollama_HandsOnEachPieceAsItIsRead()
    {
        var backend = new OllamaBackend(_http, _ollama.BaseUrl);
        var finish = new TaskCompletionSource();
        _ollama.Reply = _ => new FakeReply { Pieces = ["Hel", "lo", " world"], Hold = finish };
        var pieces = new List<string>();
        var allRead = new TaskCompletionSource();
        var generating = backend.GenerateAsync(new BackendRequest("llama3:8b", "p", GenerationParams.None, []), piece =>
        {
            pieces.Add(piece);
            if (pieces.Count == 3) allRead.SetResult();
        }, default);

        await allRead.Task.WaitAsync(TimeSpan.FromSeconds(20)); // before the server's last ("done") message
        Assert.False(generating.IsCompleted);
        finish.SetResult();
        Assert.Equal("Hello world", (await generating).Output);
        Assert.Equal(["Hel", "lo", " world"], pieces);
    }

    [Fact]
    public async Task OpenAi_HandsOnEachDeltaAsItIsRead_AndTheUsageComesAfter()
    {
        var backend = new OpenAiBackend(_http, _openAi.BaseUrl, null);
        _openAi.Reply = _ => new FakeReply { Pieces = ["Two", " words"], PromptTokens = 9, OutputTokens = 2 };
        var pieces = new List<string>();
        var result = await backend.GenerateAsync(new BackendRequest("qwen2.5:14b", "p", GenerationParams.None, []), pieces.Add, default);
        Assert.Equal(["Two", " words"], pieces); // the empty role delta that opens the stream is not a piece
        Assert.Equal(new BackendResult("Two words", 9, 2, "qwen2.5:14b", null), result);
    }

    [Fact]
    public async Task ServersThatAnswerOneJsonBody_GiveTheResultWithoutPieces()
    {
        _ollama.Reply = _ => new FakeReply { Pieces = ["Hel", "lo"], Streams = false, PromptTokens = 4, OutputTokens = 2, DurationMs = 300 };
        _openAi.Reply = _ => new FakeReply { Pieces = ["Hel", "lo"], Streams = false, PromptTokens = 5, OutputTokens = 3 };
        var pieces = new List<string>();

        var ollama = await new OllamaBackend(_http, _ollama.BaseUrl).GenerateAsync(new BackendRequest("llama3:8b", "p", GenerationParams.None, []), pieces.Add, default);
        var openAi = await new OpenAiBackend(_http, _openAi.BaseUrl, null).GenerateAsync(new BackendRequest("qwen2.5:14b", "p", GenerationParams.None, []), pieces.Add, default);

        Assert.Equal(new BackendResult("Hello", 4, 2, "llama3:8b", 300), ollama);
        Assert.Equal(new BackendResult("Hello", 5, 3, "qwen2.5:14b", null), openAi);
        Assert.Empty(pieces);
    }

    [Fact]
    public async Task Unreachable_SaysHowToStartIt()
    {
        var backend = new OllamaBackend(_http, new Uri("http://127.0.0.1:9"));
        await Assert.ThrowsAsync<BackendUnreachableException>(() => backend.ListModelsAsync(default));
        Assert.Equal("Ollama is not reachable at http://127.0.0.1:9. Start it with `ollama serve`, or set --backend-url.", backend.UnreachableMessage);
    }

    [Fact]
    public async Task OpenAi_ListsModels_AndReadsTheStreamAndItsUsage()
    {
        _openAi.RequiredKey = "sk-local";
        var backend = new OpenAiBackend(_http, _openAi.BaseUrl, "sk-local");
        Assert.Equal(["qwen2.5:14b"], await backend.ListModelsAsync(default));

        _openAi.Reply = _ => new FakeReply { Pieces = ["Two", " words"], PromptTokens = 9, OutputTokens = 2 };
        var result = await backend.GenerateAsync(new BackendRequest("qwen2.5:14b", "Answer", AllParams, [Png]), null, default);

        Assert.Equal(new BackendResult("Two words", 9, 2, "qwen2.5:14b", null), result);
        var request = await _openAi.NextRequestAsync();
        Assert.True(request.GetProperty("stream").GetBoolean());
        Assert.True(request.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        Assert.Equal(64, request.GetProperty("max_tokens").GetInt32());
        Assert.Equal(0.2, request.GetProperty("temperature").GetDouble());
        Assert.Equal(0.9, request.GetProperty("top_p").GetDouble());
        Assert.Equal(42, request.GetProperty("seed").GetInt64());
        Assert.Equal(["\n\n", "END"], request.GetProperty("stop").EnumerateArray().Select(s => s.GetString()));
        var parts = request.GetProperty("messages")[0].GetProperty("content");
        Assert.Equal("Answer", parts[0].GetProperty("text").GetString());
        Assert.Equal("data:image/png;base64," + Convert.ToBase64String(Png.Content), parts[1].GetProperty("image_url").GetProperty("url").GetString());
    }

    [Fact]
    public async Task OpenAi_WithoutUsage_CountsOneTokenPerChunk()
    {
        var backend = new OpenAiBackend(_http, _openAi.BaseUrl, null);
        _openAi.Reply = _ => new FakeReply { Pieces = ["a", "b", "c", "d"], SendUsage = false };
        var result = await backend.GenerateAsync(new BackendRequest("qwen2.5:14b", "p", GenerationParams.None, []), null, default);
        Assert.Equal("abcd", result.Output);
        Assert.Equal(4, result.OutputTokens);
        Assert.Null(result.InputTokens);
    }

    [Fact]
    public async Task OpenAi_ErrorsCarryTheServersMessage()
    {
        var backend = new OpenAiBackend(_http, _openAi.BaseUrl, null);
        _openAi.Reply = _ => new FakeReply { ErrorStatus = 404 };
        var refused = await Assert.ThrowsAsync<BackendException>(() => backend.GenerateAsync(new BackendRequest("x:1b", "p", GenerationParams.None, []), null, default));
        Assert.Equal("The OpenAI-compatible server answered 404 for x:1b: The model `x:1b` does not exist.", refused.Message);

        _openAi.Reply = _ => new FakeReply { StreamError = "context length exceeded" };
        var broken = await Assert.ThrowsAsync<BackendException>(() => backend.GenerateAsync(new BackendRequest("x:1b", "p", GenerationParams.None, []), null, default));
        Assert.Contains("context length exceeded", broken.Message, StringComparison.Ordinal);
    }

    private static readonly ChatMessage[] Conversation =
    [
        new("system", "You answer in one word."),
        new("user", "Colour of the sky?"),
        new("assistant", "Blue."),
        new("user", "And of grass?"),
    ];

    private static void AssertMessages(IEnumerable<ChatMessage> expected, JsonElement request) =>
        Assert.Equal(expected, request.GetProperty("messages").EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)));

    [Fact]
    public async Task Ollama_GetsTheJobsMessagesAsTheyAre_InsteadOfThePrompt()
    {
        var backend = new OllamaBackend(_http, _ollama.BaseUrl);
        await backend.GenerateAsync(new BackendRequest("llama3:8b", "(the prompt is not used)", AllParams, [], Conversation), null, default);

        var request = await _ollama.NextRequestAsync();
        AssertMessages(Conversation, request);
        Assert.Equal(64, request.GetProperty("options").GetProperty("num_predict").GetInt32());
    }

    [Fact]
    public async Task OpenAi_GetsTheJobsMessagesAsTheyAre_InsteadOfThePrompt()
    {
        var backend = new OpenAiBackend(_http, _openAi.BaseUrl, null);
        await backend.GenerateAsync(new BackendRequest("qwen2.5:14b", "(the prompt is not used)", AllParams, [], Conversation), null, default);

        var request = await _openAi.NextRequestAsync();
        AssertMessages(Conversation, request);
        Assert.Equal(64, request.GetProperty("max_tokens").GetInt32());
        Assert.Equal(42, request.GetProperty("seed").GetInt64());
    }

    [Fact]
    public async Task Messages_TakeTheAttachmentsOnTheirLastUserMessage()
    {
        var document = new Attachment(8, "document", Encoding.UTF8.GetBytes("quarterly numbers"), "text/plain");
        ChatMessage[] messages = [new("user", "Look at this."), new("assistant", "Yes?"), new("user", "What is it?"), new("assistant", "(unfinished)")];
        var job = new BackendRequest("llama3:8b", "p", GenerationParams.None, [Png, document], messages);

        await new OllamaBackend(_http, _ollama.BaseUrl).GenerateAsync(job, null, default);
        var ollamaMessages = (await _ollama.NextRequestAsync()).GetProperty("messages");
        Assert.Equal(4, ollamaMessages.GetArrayLength());
        Assert.Equal("What is it?\n\n--- attachment 8 ---\nquarterly numbers", ollamaMessages[2].GetProperty("content").GetString());
        Assert.Equal([Convert.ToBase64String(Png.Content)], ollamaMessages[2].GetProperty("images").EnumerateArray().Select(i => i.GetString()));
        Assert.False(ollamaMessages[3].TryGetProperty("images", out _));
        Assert.Equal("Look at this.", ollamaMessages[0].GetProperty("content").GetString());

        await new OpenAiBackend(_http, _openAi.BaseUrl, null).GenerateAsync(job with { Model = "qwen2.5:14b" }, null, default);
        var openAiMessages = (await _openAi.NextRequestAsync()).GetProperty("messages");
        var parts = openAiMessages[2].GetProperty("content");
        Assert.StartsWith("What is it?", parts[0].GetProperty("text").GetString(), StringComparison.Ordinal);
        Assert.Equal("image_url", parts[1].GetProperty("type").GetString());
        Assert.Equal("(unfinished)", openAiMessages[3].GetProperty("content").GetString());
    }

    [Fact]
    public void Messages_AreReadFromTheAssignment()
    {
        using var chat = JsonDocument.Parse("""{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_tokens": 5}""");
        Assert.Equal([new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi")], ChatMessage.ListFrom(chat.RootElement));
        using var plain = JsonDocument.Parse("""{"max_tokens": 5}""");
        Assert.Null(ChatMessage.ListFrom(plain.RootElement));
        Assert.Null(ChatMessage.ListFrom(null));
        using var broken = JsonDocument.Parse("""{"messages": [{"role": "user", "content": "Hi"}, {"role": "user"}]}""");
        Assert.Equal("params.messages[1] must have a string role and a string content",
            Assert.Throws<BackendException>(() => ChatMessage.ListFrom(broken.RootElement)).Message);
    }

    [Fact]
    public void Params_AreReadFromTheAssignment()
    {
        using var json = JsonDocument.Parse("""{"max_tokens": 10, "temperature": 1.5, "top_p": 0.5, "stop": "###", "seed": 7, "future_knob": 1}""");
        var p = GenerationParams.From(json.RootElement);
        Assert.Equal((10, 1.5, 0.5, 7L), (p.MaxTokens!.Value, p.Temperature!.Value, p.TopP!.Value, p.Seed!.Value));
        Assert.Equal(["###"], p.Stop);
        Assert.Equal(GenerationParams.None, GenerationParams.From(null));
    }
}
