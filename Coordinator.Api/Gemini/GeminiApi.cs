using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Gemini;

namespace Coordinator.Api.Gemini;

/// <summary>
/// The Lightning agent API's <c>gemini</c> paths under <c>/api/gemini</c>: conversations whose replies are grid chat jobs
/// streamed back as Server-Sent Events, and image generation as grid image jobs. The spec declares no security for
/// them, but conversations hold private text and run paid grid work, so they take a grid API key as the Grid API does
/// (<c>Authorization: Bearer</c>), and each conversation belongs to the account of the key that created it. Not in the
/// Grid API's OpenAPI document: their contract is the Lightning agent spec's.
/// </summary>
public static class GeminiApi
{
    /// <summary>Longest conversation title, in characters.</summary>
    public const int MaxTitleLength = 500;

    public static IServiceCollection AddGeminiApi(this IServiceCollection services)
    {
        services.AddOptions<GeminiOptions>().BindConfiguration(GeminiOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ConversationStore>();
        services.AddTransient<GeminiChat>();
        services.AddTransient<GeminiImages>();
        return services;
    }

    public static RouteGroupBuilder MapGeminiApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/api/gemini").ExcludeFromDescription().AddEndpointFilter(AuthenticateAsync);
        group.MapGet("/conversations", ListAsync);
        group.MapPost("/conversations", CreateAsync);
        group.MapGet("/conversations/{id:long}", GetAsync);
        group.MapDelete("/conversations/{id:long}", DeleteAsync);
        group.MapGet("/conversations/{id:long}/messages", ListMessagesAsync);
        group.MapPost("/conversations/{id:long}/messages", (long id, HttpContext context, GeminiChat chat) => chat.SendAsync(context, id));
        group.MapPost("/generate-image", (HttpContext context, GeminiImages images) => images.GenerateAsync(context));
        return group;
    }

    /// <summary>A grid API key, refused in the spec's <c>GeminiError</c>.</summary>
    private static async ValueTask<object?> AuthenticateAsync(EndpointFilterInvocationContext invocation, EndpointFilterDelegate next) =>
        await CallerAuthentication.AuthenticateAsync(invocation.HttpContext, needWorker: false) switch
        {
            null => await next(invocation),
            AuthenticationFailure.NoKey => GeminiErrors.Error(StatusCodes.Status401Unauthorized, "send a grid API key as 'Authorization: Bearer vk_live_…'"),
            AuthenticationFailure.AccountDisabled => GeminiErrors.Error(StatusCodes.Status401Unauthorized, "this account is disabled"),
            _ => GeminiErrors.Error(StatusCodes.Status401Unauthorized, "this API key is not valid or has been revoked"),
        };

    public static async Task<IResult> ListAsync(HttpContext context, ConversationStore conversations)
    {
        var list = await conversations.ListAsync(context.GetCaller().AccountId, context.RequestAborted);
        return TypedResults.Json(list.Select(GeminiConversationDto.Of).ToList());
    }

    public static async Task<IResult> CreateAsync(HttpContext context, ConversationStore conversations)
    {
        var (fields, error) = await JsonFields.ReadJsonAsync(context.Request);
        if (fields is null) return GeminiErrors.BadRequest(error!);
        var title = fields.String("title", required: true, maxLength: MaxTitleLength);
        if (!fields.IsValid) return GeminiErrors.BadRequest(fields.Errors);
        var conversation = await conversations.CreateAsync(context.GetCaller().AccountId, title!, context.RequestAborted);
        return TypedResults.Json(GeminiConversationDto.Of(conversation), statusCode: StatusCodes.Status201Created);
    }

    public static async Task<IResult> GetAsync(long id, HttpContext context, ConversationStore conversations)
    {
        var accountId = context.GetCaller().AccountId;
        if (await conversations.GetAsync(accountId, id, context.RequestAborted) is not { } conversation) return GeminiErrors.ConversationNotFound(id);
        // Deleted between the two reads: as if it had not been found.
        if (await conversations.MessagesAsync(accountId, id, context.RequestAborted) is not { } messages) return GeminiErrors.ConversationNotFound(id);
        return TypedResults.Json(new GeminiConversationWithMessagesDto(conversation.Id, conversation.Title, GeminiTime.Of(conversation.CreatedAt),
            messages.Select(GeminiMessageDto.Of).ToList()));
    }

    public static async Task<IResult> DeleteAsync(long id, HttpContext context, ConversationStore conversations) =>
        await conversations.DeleteAsync(context.GetCaller().AccountId, id, context.RequestAborted)
            ? TypedResults.NoContent()
            : GeminiErrors.ConversationNotFound(id);

    /// <summary>The messages in the order they were stored. The spec lists no 404 here; a conversation the caller does not have is one all the same.</summary>
    public static async Task<IResult> ListMessagesAsync(long id, HttpContext context, ConversationStore conversations) =>
        await conversations.MessagesAsync(context.GetCaller().AccountId, id, context.RequestAborted) is { } messages
            ? TypedResults.Json(messages.Select(GeminiMessageDto.Of).ToList())
            : GeminiErrors.ConversationNotFound(id);

    /// <summary>The model a request names, or the configured default for none or for the spec's default name.</summary>
    internal static string ModelFor(string? requested, GeminiOptions options) =>
        string.IsNullOrWhiteSpace(requested) || requested == GeminiOptions.SpecDefaultModel ? options.DefaultModel : requested;
}
