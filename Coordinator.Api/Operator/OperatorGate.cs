using System.Globalization;
using System.Security.Cryptography;
using Coordinator.Api.Infrastructure;
using Coordinator.Api.Lightning;
using Coordinator.Api.RateLimits;
using Coordinator.Grains.Accounts;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;

namespace Coordinator.Api.Operator;

/// <summary>
/// Operator authentication for everything under <c>/operator</c>: an operator key as <c>Authorization: Bearer …</c>, or
/// the operator cookie a browser gets from <c>/operator/signin</c>. Keys are compared by hash, in constant time, against
/// every configured hash. The cookie holds a Data Protection-protected hash of the key it was signed in with and its
/// expiry (the key ring is PostgreSQL's, shared by every silo), so a cookie from one silo works on all, and it stops
/// working once its key's hash is taken out of the configuration.
/// </summary>
public sealed class OperatorGate
{
    public const string Prefix = "/operator";
    public const string CookieName = "coordinator_operator";
    public const string SignInPath = "/operator/signin";
    public const string SignOutPath = "/operator/signout";

    private readonly byte[][] _hashes;
    private readonly OperatorOptions _options;
    private readonly IDataProtector _protector;
    private readonly TimeProvider _time;
    private readonly FailureWindows _failures;
    private readonly GroupLimit _failureLimit;

    public OperatorGate(IOptions<OperatorOptions> options, IDataProtectionProvider protection, TimeProvider time, ActiveSilos silos)
    {
        _options = options.Value;
        _failures = new FailureWindows(silos, time);
        _failureLimit = new GroupLimit { PermitLimit = _options.FailedAttemptsPerMinute, Window = TimeSpan.FromMinutes(1) };
        _hashes = [.. _options.KeyHashes.Select(OperatorKeys.ParseHashLine)];
        _protector = protection.CreateProtector("Coordinator.Operator.Session.v1");
        _time = time;
    }

    /// <summary>Whether any operator key is configured; without one every operator surface is off.</summary>
    public bool Enabled => _hashes.Length > 0;

    /// <summary>Whether <paramref name="key"/> is an operator key: its hash compared with every configured one, in constant time.</summary>
    public bool IsOperatorKey(string key) => Matches(OperatorKeys.Hash(key));

    /// <summary>The value of the operator cookie for a key that <see cref="IsOperatorKey"/>.</summary>
    public string NewSession(string key)
    {
        var expires = (_time.GetUtcNow() + _options.SessionLifetime).ToUnixTimeSeconds();
        return _protector.Protect($"{Convert.ToHexString(OperatorKeys.Hash(key))}|{expires.ToString(CultureInfo.InvariantCulture)}");
    }

    /// <summary>Whether a cookie value is a live session of a configured key.</summary>
    public bool IsLiveSession(string cookie)
    {
        string payload;
        try
        {
            payload = _protector.Unprotect(cookie);
        }
        catch (CryptographicException)
        {
            return false;
        }
        var parts = payload.Split('|');
        if (parts.Length != 2 || !long.TryParse(parts[1], CultureInfo.InvariantCulture, out var expires)) return false;
        if (_time.GetUtcNow().ToUnixTimeSeconds() >= expires) return false;
        byte[] hash;
        try
        {
            hash = Convert.FromHexString(parts[0]);
        }
        catch (FormatException)
        {
            return false;
        }
        return Matches(hash);
    }

    /// <summary>The cookie's settings: only for <c>/operator</c>, not readable by scripts, never sent cross-site.</summary>
    public CookieOptions CookieOptions(HttpContext context) => new()
    {
        Path = Prefix,
        HttpOnly = true,
        SameSite = SameSiteMode.Strict,
        Secure = context.Request.IsHttps,
        MaxAge = _options.SessionLifetime,
    };

    /// <summary>Counts a failed operator authentication from the request's client address.</summary>
    public void CountFailure(HttpContext context) => _failures.Record(context.ClientAddress(), _failureLimit);

    /// <summary>
    /// How long the request's client address must wait, when it has failed too often this minute; null when it may try.
    /// </summary>
    public TimeSpan? Blocked(HttpContext context) =>
        _failures.RefusedUntil(context.ClientAddress(), _failureLimit) is { } until ? until - _time.GetUtcNow() : null;

    /// <summary>The 429 of an address that failed too often: <c>Retry-After</c> and the Grid API's error body.</summary>
    public static IResult TooManyFailures(HttpContext context, TimeSpan wait)
    {
        var seconds = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds));
        context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        return TypedResults.Json(new ApiError("rate_limited", $"too many failed operator sign-ins from this address; retry after {seconds} s"),
            statusCode: StatusCodes.Status429TooManyRequests);
    }

    /// <summary>
    /// The gate, as middleware on every path under <c>/operator</c>: off (404) without configured keys; the sign-in page
    /// open; everything else only with an operator key or a live operator cookie.
    /// </summary>
    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        var headers = context.Response.Headers;
        headers.CacheControl = "no-store";
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "same-origin";
        // The Orleans Dashboard's single-page app and the sign-in form load only their own files; nothing here can be framed.
        headers.ContentSecurityPolicy = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

        if (!Enabled)
        {
            await Refuse(context, TypedResults.NotFound(new ApiError("not_found",
                "the operator surfaces are off: no operator key is configured (Operator:KeyHashes)")));
            return;
        }
        var path = context.Request.Path;
        if (path.Equals(SignInPath, StringComparison.OrdinalIgnoreCase) || path.Equals(SignOutPath, StringComparison.OrdinalIgnoreCase))
        {
            await next(context);
            return;
        }
        if (Blocked(context) is { } wait)
        {
            await Refuse(context, TooManyFailures(context, wait));
            return;
        }

        var authorization = context.Request.Headers.Authorization.ToString();
        if (authorization.Length > 0)
        {
            if (!authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                headers.WWWAuthenticate = "Bearer";
                await Refuse(context, ApiErrors.Unauthorized("send the operator key as 'Authorization: Bearer op_…'"));
                return;
            }
            var key = authorization["Bearer ".Length..].Trim();
            if (IsOperatorKey(key))
            {
                await next(context);
                return;
            }
            CountFailure(context);
            if (ApiKeys.LooksLikeKey(key))
            {
                await Refuse(context, ApiErrors.Forbidden("forbidden", "an account's API key is not an operator key"));
                return;
            }
            headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
            await Refuse(context, ApiErrors.Unauthorized("this is not an operator key"));
            return;
        }

        if (context.Request.Cookies[CookieName] is { Length: > 0 } cookie)
        {
            if (IsLiveSession(cookie))
            {
                await next(context);
                return;
            }
            CountFailure(context);
            context.Response.Cookies.Delete(CookieName, new CookieOptions { Path = Prefix });
        }

        // A browser is sent to the sign-in form; anything else gets the API's 401.
        if (HttpMethods.IsGet(context.Request.Method) && context.Request.Headers.Accept.ToString().Contains("text/html", StringComparison.OrdinalIgnoreCase))
        {
            var back = context.Request.PathBase + context.Request.Path + context.Request.QueryString;
            context.Response.Redirect($"{SignInPath}?return={Uri.EscapeDataString(back.ToString())}");
            return;
        }
        headers.WWWAuthenticate = "Bearer";
        await Refuse(context, ApiErrors.Unauthorized("send the operator key as 'Authorization: Bearer op_…', or sign in at /operator/signin"));
    }

    private static Task Refuse(HttpContext context, IResult result) => result.ExecuteAsync(context);

    private bool Matches(byte[] hash)
    {
        // Every configured hash is compared, each in constant time, so the time taken says nothing about which matched.
        var match = false;
        foreach (var configured in _hashes) match |= CryptographicOperations.FixedTimeEquals(configured, hash);
        return match;
    }
}
