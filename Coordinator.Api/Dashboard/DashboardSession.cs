using System.Globalization;
using System.Security.Claims;
using Coordinator.Grains.Accounts;
using Coordinator.Grains.Dashboard;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;

namespace Coordinator.Api.Dashboard;

/// <summary>The dashboard's sign-in session: which account, through which of its keys.</summary>
public static class DashboardSession
{
    public const string Scheme = "Dashboard";
    private const string AccountClaim = "coordinator:account";
    private const string KeyClaim = "coordinator:key";
    private const string SessionItem = "coordinator.dashboard.session";

    /// <summary>Starts a session for the key's account. The key itself is not kept.</summary>
    public static Task SignInAsync(HttpContext context, Caller caller)
    {
        var identity = new ClaimsIdentity(
            [
                new Claim(AccountClaim, caller.AccountId.ToString(CultureInfo.InvariantCulture)),
                new Claim(KeyClaim, caller.KeyId.ToString(CultureInfo.InvariantCulture)),
            ], Scheme);
        return context.SignInAsync(Scheme, new ClaimsPrincipal(identity), new AuthenticationProperties { IsPersistent = false });
    }

    /// <summary>The signed-in account of this request, or null.</summary>
    public static SessionAccount? Current(HttpContext context) => context.Items[SessionItem] as SessionAccount;

    /// <summary>Every request: the session ends as soon as its key is revoked or its account disabled.</summary>
    public static async Task ValidateAsync(CookieValidatePrincipalContext context)
    {
        var principal = context.Principal;
        var session = long.TryParse(principal?.FindFirstValue(AccountClaim), CultureInfo.InvariantCulture, out var accountId)
                      && long.TryParse(principal?.FindFirstValue(KeyClaim), CultureInfo.InvariantCulture, out var keyId)
            ? await context.HttpContext.RequestServices.GetRequiredService<DashboardReads>().SessionAsync(accountId, keyId, context.HttpContext.RequestAborted)
            : null;
        if (session is null)
        {
            context.RejectPrincipal();
            await context.HttpContext.SignOutAsync(Scheme);
            return;
        }
        context.HttpContext.Items[SessionItem] = session;
    }
}
