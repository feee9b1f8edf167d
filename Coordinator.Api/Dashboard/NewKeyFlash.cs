using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.DataProtection;

namespace Coordinator.Api.Dashboard;

/// <summary>A key just created, to show once on the page the browser is redirected to.</summary>
public sealed record NewKeyShown(long AccountId, string Key, string Name, bool ForWorker, long? WorkerId);

/// <summary>
/// Post/redirect/get for new keys: the form handler puts the key in a short-lived, HttpOnly, Data Protection-encrypted
/// cookie and redirects; the next GET shows it and deletes the cookie. Reloading the page therefore neither shows the
/// key again nor posts the form a second time (which would make another key, or another account).
/// </summary>
public static class NewKeyFlash
{
    private const string CookieName = "coordinator_new_key";
    private static readonly TimeSpan Lifetime = TimeSpan.FromMinutes(2);

    public static void Put(HttpContext context, string path, NewKeyShown shown) =>
        context.Response.Cookies.Append(CookieName, Protector(context).Protect(JsonSerializer.Serialize(shown), Lifetime), Options(context, path));

    /// <summary>The key put here for this account by the previous response, once; null otherwise.</summary>
    public static NewKeyShown? Take(HttpContext context, string path, long accountId)
    {
        if (!context.Request.Cookies.TryGetValue(CookieName, out var value)) return null;
        context.Response.Cookies.Delete(CookieName, Options(context, path));
        try
        {
            var shown = JsonSerializer.Deserialize<NewKeyShown>(Protector(context).Unprotect(value));
            return shown?.AccountId == accountId ? shown : null;
        }
        catch (Exception exception) when (exception is CryptographicException or JsonException or FormatException)
        {
            return null;
        }
    }

    private static ITimeLimitedDataProtector Protector(HttpContext context) =>
        context.RequestServices.GetRequiredService<IDataProtectionProvider>().CreateProtector("Coordinator.Dashboard.NewKey").ToTimeLimitedDataProtector();

    private static CookieOptions Options(HttpContext context, string path) => new()
    {
        HttpOnly = true,
        SameSite = SameSiteMode.Strict,
        Secure = context.Request.IsHttps,
        Path = path,
        IsEssential = true,
    };
}
