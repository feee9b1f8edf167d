using System.Net;
using Coordinator.Api.Infrastructure;
using Coordinator.Grains.Accounting;
using Coordinator.Grains.Operator;
using Microsoft.AspNetCore.Http.HttpResults;
using Orleans.Dashboard;
using Orleans.Runtime;

namespace Coordinator.Api.Operator;

public sealed record SiloDto(string Address, string Status, string? SiloName, string? HostName, DateTime StartedAt, DateTime? LastAliveAt, long Activations);

public sealed record GrainTypeDto(string Type, long Activations);

public sealed record WorkerOnlineDto(long Id, long AccountId, string Name, string? AgentVersion, DateTime LastSeenAt);

public sealed record WorkersOnlineDto(long Count, IReadOnlyList<WorkerOnlineDto> MostRecent);

public sealed record ClusterDto(IReadOnlyList<SiloDto> Silos, long Activations, IReadOnlyList<GrainTypeDto> Grains, WorkersOnlineDto Workers);

public sealed record PayoutDto(long Id, long WorkerId, decimal AmountCredits, decimal AmountUsd, string Status, DateTime CreatedAt, DateTime? PaidAt)
{
    public static PayoutDto From(PayoutBatch batch) => new(batch.Id, batch.WorkerId, batch.AmountCredits, batch.AmountUsd, batch.Status, batch.CreatedAt, batch.PaidAt);
}

public sealed record PayoutsDto(IReadOnlyList<PayoutDto> Pending, decimal TotalUsd);

public sealed record SettledDto(IReadOnlyList<PayoutDto> Settled, int Count);

public sealed record AccountStatusDto(long Id, string Name, bool Disabled, DateTime? DisabledAt, string? DisabledReason, DateTime CreatedAt)
{
    public static AccountStatusDto From(AccountStatus account) =>
        new(account.Id, account.Name, account.Disabled, account.DisabledAt, account.DisabledReason, account.CreatedAt);
}

public sealed record DisabledDto(AccountStatusDto Account, int CancelledJobs);

/// <summary>
/// The operator surfaces under <c>/operator</c>, outside the spec'd APIs and their OpenAPI documents: the cluster view,
/// payout settlement, account disable and enable, the Orleans Dashboard and the sign-in form. Every path is behind
/// <see cref="OperatorGate"/>.
/// </summary>
public static class OperatorApi
{
    /// <summary>The longest note an operator may keep with a disable.</summary>
    public const int MaxReasonLength = 500;

    public static IServiceCollection AddOperator(this IServiceCollection services)
    {
        services.AddOptions<OperatorOptions>().BindConfiguration(OperatorOptions.Section)
            .Configure<IConfiguration>((options, configuration) => options.KeyHashes = OperatorOptions.ReadKeyHashes(configuration))
            .Validate(options => options.KeyHashes.All(OperatorKeys.IsHashLine),
                "Operator:KeyHashes: every entry must be 'sha256:' and 64 hex digits, the SHA-256 of an operator key; `Coordinator.Silo operator-key new` prints a key and its line.")
            .Validate(options => options.SessionLifetime > TimeSpan.Zero, "Operator:SessionLifetime must be positive (e.g. 12:00:00).")
            .Validate(options => options.FailedAttemptsPerMinute > 0, "Operator:FailedAttemptsPerMinute must be at least 1.")
            .ValidateOnStart();
        services.AddSingleton<OperatorGate>();
        return services;
    }

    /// <summary>The gate on every <c>/operator</c> path. Call after the trusted proxies (it counts failures per client address).</summary>
    public static IApplicationBuilder UseOperatorGate(this IApplicationBuilder app)
    {
        var gate = app.ApplicationServices.GetRequiredService<OperatorGate>();
        return app.Use((context, next) => context.Request.Path.StartsWithSegments(OperatorGate.Prefix, StringComparison.OrdinalIgnoreCase)
            ? gate.InvokeAsync(context, next)
            : next(context));
    }

    public static WebApplication MapOperator(this WebApplication app)
    {
        var group = app.MapGroup(OperatorGate.Prefix).ExcludeFromDescription();
        group.MapGet("/signin", SignInPage);
        group.MapPost("/signin", SignInAsync);
        group.MapPost("/signout", SignOut);
        group.MapGet("/cluster", ClusterAsync);
        group.MapGet("/payouts", PayoutsAsync);
        group.MapPost("/payouts/settle_all", SettleAllAsync);
        group.MapPost("/payouts/{id:long}/settle", SettleAsync);
        group.MapGet("/accounts/{id:long}", AccountAsync);
        group.MapPost("/accounts/{id:long}/disable", DisableAsync);
        group.MapPost("/accounts/{id:long}/enable", EnableAsync);
        if (OperatorOptions.DashboardOn(app.Configuration)) group.MapOrleansDashboard("/dashboard").ExcludeFromDescription();
        return app;
    }

    public static async Task<Ok<ClusterDto>> ClusterAsync(IGrainFactory grains, ClusterReads reads, HttpContext context)
    {
        var management = grains.GetGrain<IManagementGrain>(0);
        var hosts = await management.GetDetailedHosts(false);
        var active = hosts.Where(host => host.Status == SiloStatus.Active).Select(host => host.SiloAddress).ToArray();
        SimpleGrainStatistic[] statistics = active.Length == 0 ? [] : await management.GetSimpleGrainStatistics(active);
        var perSilo = statistics.GroupBy(s => s.SiloAddress).ToDictionary(g => g.Key, g => g.Sum(s => (long)s.ActivationCount));
        var silos = hosts
            .OrderBy(host => host.Status == SiloStatus.Active ? 0 : 1).ThenBy(host => host.StartTime)
            .Select(host => new SiloDto(host.SiloAddress.ToString(), host.Status.ToString(), host.SiloName, host.HostName,
                DateTime.SpecifyKind(host.StartTime, DateTimeKind.Utc), host.IAmAliveTime == default ? null : DateTime.SpecifyKind(host.IAmAliveTime, DateTimeKind.Utc),
                perSilo.GetValueOrDefault(host.SiloAddress)))
            .ToList();
        var types = statistics.GroupBy(s => s.GrainType, StringComparer.Ordinal)
            .Select(g => new GrainTypeDto(g.Key, g.Sum(s => (long)s.ActivationCount)))
            .OrderByDescending(t => t.Activations).ThenBy(t => t.Type, StringComparer.Ordinal)
            .ToList();
        var (online, recent) = await reads.OnlineWorkersAsync(context.RequestAborted);
        return TypedResults.Ok(new ClusterDto(silos, types.Sum(t => t.Activations), types,
            new WorkersOnlineDto(online, [.. recent.Select(w => new WorkerOnlineDto(w.Id, w.AccountId, w.Name, w.AgentVersion, w.LastSeenAt))])));
    }

    public static async Task<Ok<PayoutsDto>> PayoutsAsync(Credits credits, HttpContext context)
    {
        var pending = await credits.PendingBatchesAsync(context.RequestAborted);
        return TypedResults.Ok(new PayoutsDto([.. pending.Select(PayoutDto.From)], pending.Sum(b => b.AmountUsd)));
    }

    /// <summary>
    /// Marks one pending batch paid, as <c>payouts mark-paid ID</c> does: a batch already paid, or none, is a 404 (the
    /// CLI's "not a pending batch"), so a retried request never pays twice; the body says which it was.
    /// </summary>
    public static async Task<Results<Ok<PayoutDto>, NotFound<ApiError>>> SettleAsync(long id, Credits credits, HttpContext context)
    {
        if (await credits.MarkPaidAsync(id, context.RequestAborted))
        {
            return TypedResults.Ok(PayoutDto.From((await credits.BatchAsync(id, context.RequestAborted))!));
        }
        var batch = await credits.BatchAsync(id, context.RequestAborted);
        return ApiErrors.NotFound(batch is null
            ? $"there is no payout batch {id}"
            : $"payout batch {id} is not pending (it is {batch.Status}); nothing was changed");
    }

    /// <summary>Marks every pending batch paid, as <c>payouts mark-paid --all</c> does; answers the batches this call paid.</summary>
    public static async Task<Ok<SettledDto>> SettleAllAsync(Credits credits, HttpContext context)
    {
        var settled = await credits.MarkAllPaidAsync(context.RequestAborted);
        return TypedResults.Ok(new SettledDto([.. settled.Select(PayoutDto.From)], settled.Count));
    }

    public static async Task<Results<Ok<AccountStatusDto>, NotFound<ApiError>>> AccountAsync(long id, AccountControl control, HttpContext context) =>
        await control.GetAsync(id, context.RequestAborted) is { } account
            ? TypedResults.Ok(AccountStatusDto.From(account))
            : ApiErrors.NotFound($"there is no account {id}");

    /// <summary>
    /// Disables an account: its keys are refused everywhere (at once on this node, within the key cache's lifetime on the
    /// others) and its pending jobs are cancelled. The body is optional: <c>{"reason": "…"}</c>.
    /// </summary>
    public static async Task<Results<Ok<DisabledDto>, NotFound<ApiError>, UnprocessableEntity<ApiError>>> DisableAsync(long id, AccountControl control, HttpContext context)
    {
        var (fields, error) = await JsonFields.ReadAsync(context.Request, allowEmpty: true);
        if (fields is null) return ApiErrors.InvalidRequest(error!);
        var reason = fields.String("reason", maxLength: MaxReasonLength);
        if (fields.UnknownFields(["reason"]).ToList() is { Count: > 0 } unknown) return ApiErrors.InvalidRequest($"unknown field(s): {string.Join(", ", unknown)}");
        if (!fields.IsValid) return ApiErrors.InvalidRequest(string.Join("; ", fields.Errors));
        var outcome = await control.DisableAsync(id, reason, context.RequestAborted);
        return outcome is null
            ? ApiErrors.NotFound($"there is no account {id}")
            : TypedResults.Ok(new DisabledDto(AccountStatusDto.From(outcome.Account), outcome.CancelledJobs));
    }

    public static async Task<Results<Ok<AccountStatusDto>, NotFound<ApiError>>> EnableAsync(long id, AccountControl control, HttpContext context) =>
        await control.EnableAsync(id, context.RequestAborted) is { } account
            ? TypedResults.Ok(AccountStatusDto.From(account))
            : ApiErrors.NotFound($"there is no account {id}");

    private static ContentHttpResult SignInPage(HttpContext context) =>
        SignInHtml(Destination(context.Request.Query["return"].ToString(), context), message: null, StatusCodes.Status200OK);

    /// <summary>The sign-in form's post: a right key sets the operator cookie and goes on; a wrong one counts as a failure.</summary>
    private static async Task<IResult> SignInAsync(HttpContext context, OperatorGate gate)
    {
        if (gate.Blocked(context) is { } wait) return OperatorGate.TooManyFailures(context, wait);
        if (!context.Request.HasFormContentType) return ApiErrors.InvalidRequest("post the sign-in form (application/x-www-form-urlencoded) with the field 'key'");
        IFormCollection form;
        try
        {
            form = await context.Request.ReadFormAsync(context.RequestAborted);
        }
        catch (InvalidDataException exception)
        {
            return ApiErrors.InvalidRequest($"the form could not be read: {exception.Message}");
        }
        var key = form["key"].ToString().Trim();
        var destination = Destination(form["return"].ToString(), context);
        if (key.Length == 0 || key.Length > 200 || !gate.IsOperatorKey(key))
        {
            if (key.Length > 0) gate.CountFailure(context);
            return SignInHtml(destination, "That is not an operator key.", StatusCodes.Status401Unauthorized);
        }
        context.Response.Cookies.Append(OperatorGate.CookieName, gate.NewSession(key), gate.CookieOptions(context));
        return Results.Redirect(destination);
    }

    private static RedirectHttpResult SignOut(HttpContext context)
    {
        context.Response.Cookies.Delete(OperatorGate.CookieName, new CookieOptions { Path = OperatorGate.Prefix });
        return TypedResults.Redirect(OperatorGate.SignInPath);
    }

    /// <summary>Where a sign-in goes on to: an operator path only (no open redirect), else the dashboard or the cluster view.</summary>
    private static string Destination(string requested, HttpContext context)
    {
        if (requested.StartsWith(OperatorGate.Prefix + "/", StringComparison.Ordinal) && !requested.Contains("//", StringComparison.Ordinal)
            && !requested.Contains('\\', StringComparison.Ordinal) && !requested.StartsWith(OperatorGate.SignInPath, StringComparison.OrdinalIgnoreCase))
        {
            return requested;
        }
        return OperatorOptions.DashboardOn(context.RequestServices.GetRequiredService<IConfiguration>()) ? "/operator/dashboard/" : "/operator/cluster";
    }

    private static ContentHttpResult SignInHtml(string destination, string? message, int status)
    {
        var notice = message is null ? "" : $"<p role=\"alert\">{WebUtility.HtmlEncode(message)}</p>";
        return TypedResults.Content($"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Operator sign-in · Coordinator</title></head>
            <body><main><h1>Operator sign-in</h1>{notice}
            <form method="post" action="{OperatorGate.SignInPath}">
            <label for="key">Operator key</label> <input id="key" name="key" type="password" autocomplete="off" required>
            <input type="hidden" name="return" value="{WebUtility.HtmlEncode(destination)}">
            <button type="submit">Sign in</button></form></main></body></html>
            """, "text/html; charset=utf-8", statusCode: status);
    }
}
