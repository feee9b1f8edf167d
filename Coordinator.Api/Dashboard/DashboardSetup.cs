using System.Reflection;
using Coordinator.Grains.Dashboard;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Mvc;

namespace Coordinator.Api.Dashboard;

/// <summary>
/// The browser dashboard at <c>/</c>: Razor components rendered on the server (no interactivity, no framework script),
/// a cookie session and antiforgery-protected forms. The API under <c>/api/v1</c> keeps its bearer keys and ignores
/// the cookie.
/// </summary>
public static class DashboardSetup
{
    private static readonly Dictionary<string, string> AssetTypes = new(StringComparer.Ordinal)
    {
        ["dashboard.css"] = "text/css; charset=utf-8",
        ["dashboard.js"] = "text/javascript; charset=utf-8",
    };

    private const string NotFoundHtml = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Not found · Coordinator</title><link rel="stylesheet" href="/dashboard/assets/dashboard.css"></head>
        <body><main id="main"><h1>Not found</h1><div class="empty"><p>There is no page at this address.
        Go to <a href="/">the dashboard</a> or <a href="/api/docs">the API docs</a>.</p></div></main></body></html>
        """;

    public static IServiceCollection AddDashboard(this IServiceCollection services)
    {
        services.AddSingleton<DashboardReads>();
        services.AddRazorComponents();
        services.AddAntiforgery(antiforgery =>
        {
            antiforgery.Cookie.Name = "coordinator_antiforgery";
            antiforgery.Cookie.SameSite = SameSiteMode.Strict;
            antiforgery.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
        });
        services.AddAuthentication(DashboardSession.Scheme).AddCookie(DashboardSession.Scheme, cookie =>
        {
            // The cookie holds a Data Protection-encrypted ticket naming the account and the key signed in with,
            // never the key itself; every request checks that key is still active.
            cookie.Cookie.Name = "coordinator_session";
            cookie.Cookie.HttpOnly = true;
            cookie.Cookie.SameSite = SameSiteMode.Strict;
            cookie.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            cookie.ExpireTimeSpan = TimeSpan.FromHours(12);
            cookie.SlidingExpiration = true;
            cookie.LoginPath = "/signin";
            cookie.Events.OnValidatePrincipal = DashboardSession.ValidateAsync;
        });
        return services;
    }

    public static WebApplication MapDashboard(this WebApplication app)
    {
        app.UseAuthentication();
        app.UseAntiforgery();
        app.Use(async (context, next) =>
        {
            // The operator surfaces set their own headers (Operator/OperatorGate.cs).
            if (context.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase) ||
                context.Request.Path.StartsWithSegments("/operator", StringComparison.OrdinalIgnoreCase))
            {
                await next(context);
                return;
            }
            // Dashboard pages load only their own stylesheet and script, post only to themselves and cannot be framed
            // (so no clickjacking of the Revoke buttons). The API and its Swagger UI keep their own rules.
            var headers = context.Response.Headers;
            headers.ContentSecurityPolicy = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
            headers.XContentTypeOptions = "nosniff";
            headers["Referrer-Policy"] = "same-origin";
            await next(context);
            // A browser that mistypes a dashboard address gets a page with a way back, not the API's JSON 404.
            if (context.Response is { StatusCode: StatusCodes.Status404NotFound, HasStarted: false, ContentType: null } && HttpMethods.IsGet(context.Request.Method))
            {
                context.Response.ContentType = "text/html; charset=utf-8";
                await context.Response.WriteAsync(NotFoundHtml, context.RequestAborted);
            }
        });
        app.MapRazorComponents<App>().ExcludeFromDescription().Add(endpoint =>
        {
            // Sign-in attempts are limited per client address (RateLimits:DashboardSignIn; the policy counts POSTs only).
            if (endpoint is RouteEndpointBuilder { RoutePattern.RawText: { } route } && route.Trim('/').Equals("signin", StringComparison.OrdinalIgnoreCase))
            {
                endpoint.Metadata.Add(new Microsoft.AspNetCore.RateLimiting.EnableRateLimitingAttribute(RateLimits.RateLimitPolicies.DashboardSignIn));
            }
        });
        app.MapGet("/dashboard/assets/{name}", Asset).ExcludeFromDescription();
        // A form field makes this endpoint validate the antiforgery token, like the component forms.
        app.MapPost("/signout", async (HttpContext context, [FromForm(Name = "signout")] string? signout) =>
        {
            await context.SignOutAsync(DashboardSession.Scheme);
            return Results.Redirect("/signin");
        }).ExcludeFromDescription();
        return app;
    }

    private static IResult Asset(string name, HttpContext context)
    {
        if (!AssetTypes.TryGetValue(name, out var contentType)) return Results.NotFound();
        var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("Coordinator.Api.Dashboard.Assets." + name);
        if (stream is null) return Results.NotFound();
        context.Response.Headers.CacheControl = "public, max-age=300";
        return Results.Stream(stream, contentType);
    }
}
