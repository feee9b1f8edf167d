using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Lightning.Agent;
using Coordinator.Grains.Lightning.Macaroons;
using Coordinator.Grains.Lightning.Payments;
using Coordinator.Grains.Lightning.Sessions;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Lightning;

/// <summary>
/// The agent API's prepaid sessions under <c>/api/sessions</c> (the spec's tag <c>sessions</c>): a deposit paid once,
/// then requests debited at their actual cost, authorised by the session's macaroon (<c>Authorization: Bearer</c>).
/// The order of the checks: the macaroon (401), the session (404), the body (400), then the session's state (410, 409,
/// 402). A genuine macaroon past its expiry is told apart: on an expired session the answer is the session's (410 or
/// 409), on a live one a 401 that says to read the session for a fresh macaroon, since each activity moves the
/// session's expiry past the one its older macaroons carry. Not in the Grid API's OpenAPI document: their contract is
/// the Lightning agent spec's.
/// </summary>
public static class AgentSessionsApi
{
    /// <summary>Adds what the endpoints need: sessions, their macaroons and <c>Lightning:Sessions</c>. Needs <c>AddLightningAgent</c>.</summary>
    public static IServiceCollection AddAgentSessionsApi(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSessionMacaroons();
        services.AddLightningSessions(configuration);
        return services;
    }

    public static RouteGroupBuilder MapAgentSessionsApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/api/sessions").ExcludeFromDescription();
        group.MapPost("", CreateAsync);
        group.MapGet("/{id}", GetAsync);
        group.MapPost("/{id}/request", RequestAsync);
        group.MapPost("/{id}/topup", TopupAsync);
        return group;
    }

    public static async Task<IResult> CreateAsync(HttpContext context, IGrainFactory grains, ILightningNode node)
    {
        var (amount, error) = await ReadAmountAsync(context.Request);
        if (error is not null) return AgentErrors.BadRequest(error);
        var id = SessionIds.NewSessionId();
        var invoice = await grains.GetGrain<ISessionGrain>(id).OpenAsync(amount);
        return TypedResults.Json(new CreateSessionResponseDto(id, SessionStates.AwaitingPayment, InvoiceDto.Of(invoice, node.IsStub)),
            statusCode: StatusCodes.Status201Created);
    }

    public static async Task<IResult> GetAsync(string id, IGrainFactory grains, ILightningNode node, SessionMacaroons macaroons,
        IOptions<AgentSessionOptions> options, CancellationToken cancellationToken)
    {
        if (!SessionIds.IsSessionId(id) || await grains.GetGrain<ISessionGrain>(id).AdvanceAsync() is not { } session) return SessionNotFound();
        var macaroon = session.IsLive ? await macaroons.MintAsync(session.Id, session.ExpiresAt!.Value, cancellationToken) : null;
        return TypedResults.Json(new SessionStatusDto(session.Id, SessionStates.Name(session.State), session.BalanceSats, options.Value.MinimumBalanceSats,
            macaroon, session.ExpiresAt,
            session.State == AgentSessionState.AwaitingPayment ? InvoiceDto.Of(session.Deposit, node.IsStub) : null,
            session.PendingTopup is { } topup ? InvoiceDto.Of(topup, node.IsStub) : null));
    }

    public static async Task<IResult> RequestAsync(string id, HttpContext context, IGrainFactory grains, SessionMacaroons macaroons,
        SessionRequests requests, IOptions<AgentOptions> agent, IOptions<AgentSessionOptions> options)
    {
        if (await AuthorizeAsync(id, context, grains, macaroons, expiredSession: Expired) is { } refused) return refused;

        var (fields, error) = await JsonFields.ReadJsonAsync(context.Request);
        if (fields is null) return AgentErrors.BadRequest(error!);
        var request = fields.String("request", required: true, maxUtf8Bytes: agent.Value.MaxRequestBytes);
        if (!fields.IsValid) return AgentErrors.BadRequest(string.Join("; ", fields.Errors));

        var admission = await grains.GetGrain<ISessionGrain>(id).AdmitAsync();
        return admission.Outcome switch
        {
            AdmissionOutcome.Admitted => TypedResults.Json(SessionRequestResponseDto.Of(await requests.RunAsync(id, request!))),
            AdmissionOutcome.NotFound => SessionNotFound(),
            AdmissionOutcome.Expired => Expired(),
            AdmissionOutcome.InsufficientBalance => AgentErrors.Error(StatusCodes.Status402PaymentRequired,
                $"the balance ({admission.Session!.BalanceSats} sats) is below the minimum of {options.Value.MinimumBalanceSats} sats; top the session up"),
            _ => AgentErrors.Error(StatusCodes.Status409Conflict, NotActiveMessage(admission.Session!)),
        };
    }

    public static async Task<IResult> TopupAsync(string id, HttpContext context, IGrainFactory grains, ILightningNode node, SessionMacaroons macaroons)
    {
        if (await AuthorizeAsync(id, context, grains, macaroons, expiredSession: NotLiveForTopup) is { } refused) return refused;
        var (amount, error) = await ReadAmountAsync(context.Request);
        if (error is not null) return AgentErrors.BadRequest(error);
        var answer = await grains.GetGrain<ISessionGrain>(id).RequestTopupAsync(amount);
        return answer.Outcome switch
        {
            TopupOutcome.Created => TypedResults.Json(new TopupSessionResponseDto(id, InvoiceDto.Of(answer.Invoice!, node.IsStub))),
            TopupOutcome.NotFound => SessionNotFound(),
            TopupOutcome.AlreadyPending => AgentErrors.Error(StatusCodes.Status409Conflict,
                "this session already has a top-up invoice outstanding (see pendingTopup in GET /api/sessions/{id}); pay it first"),
            _ => NotLiveForTopup(),
        };
    }

    /// <summary>
    /// The bearer macaroon checked against session <paramref name="id"/>: null when it authorises the request, else the
    /// refusal. A genuine but expired macaroon is looked into: the session's own answer when it has expired
    /// (<paramref name="expiredSession"/>), 404 when there is none, else a 401 that says where to get a fresh one.
    /// </summary>
    private static async Task<IResult?> AuthorizeAsync(string id, HttpContext context, IGrainFactory grains, SessionMacaroons macaroons, Func<IResult> expiredSession)
    {
        var header = context.Request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) || header.Length == Scheme.Length)
        {
            return Unauthorized("send the session's macaroon as 'Authorization: Bearer <macaroon>'; GET /api/sessions/{id} shows it once the deposit is paid");
        }
        var check = await macaroons.VerifyAsync(header[Scheme.Length..].Trim(), id, context.RequestAborted);
        if (check == MacaroonCheck.Valid) return null;
        if (check != MacaroonCheck.Expired) return Unauthorized("this macaroon is not valid for this session");
        return await grains.GetGrain<ISessionGrain>(id).AdvanceAsync() switch
        {
            null => SessionNotFound(),
            { State: AgentSessionState.Expired } => expiredSession(),
            _ => Unauthorized($"this macaroon has expired; GET /api/sessions/{id} for a fresh one"),
        };
    }

    private static async Task<(long Amount, string? Error)> ReadAmountAsync(HttpRequest request)
    {
        var (fields, error) = await JsonFields.ReadJsonAsync(request);
        if (fields is null) return (0, error);
        var amount = fields.Int("amount_sats", required: true, min: AgentSessionOptions.MinAmountSats, max: AgentSessionOptions.MaxAmountSats);
        return fields.IsValid ? (amount!.Value, null) : (0, string.Join("; ", fields.Errors));
    }

    private static IResult Unauthorized(string message) => AgentErrors.Error(StatusCodes.Status401Unauthorized, message);

    private static IResult SessionNotFound() => AgentErrors.Error(StatusCodes.Status404NotFound, "no session has this id");

    private static IResult Expired() => AgentErrors.Error(StatusCodes.Status410Gone,
        "this session has expired: it was idle past its expiresAt; open a new one with POST /api/sessions");

    private static IResult NotLiveForTopup() =>
        AgentErrors.Error(StatusCodes.Status409Conflict, "only an active or paused session can be topped up; this one is awaiting its deposit or has expired");

    private static string NotActiveMessage(SessionSnapshot session) => session.State == AgentSessionState.Paused
        ? "this session is paused: its balance fell below the minimum; pay a top-up (POST /api/sessions/{id}/topup) to resume it"
        : "this session is awaiting its deposit; pay the invoice, then GET /api/sessions/{id}";
}
