using Coordinator.Grains.Dashboard;
using Microsoft.AspNetCore.Components;

namespace Coordinator.Api.Dashboard;

/// <summary>
/// A page for signed-in users: without a session it redirects to the sign-in page; otherwise it loads its data
/// (again after a form handler ran, so the page shows the result).
/// </summary>
public abstract class DashboardPage : ComponentBase
{
    [CascadingParameter]
    public HttpContext HttpContext { get; set; } = default!;

    [Inject]
    protected NavigationManager Navigation { get; set; } = default!;

    protected SessionAccount Session { get; private set; } = default!;

    protected CancellationToken Aborted => HttpContext.RequestAborted;

    protected sealed override async Task OnInitializedAsync()
    {
        var session = DashboardSession.Current(HttpContext);
        if (session is null)
        {
            var here = Navigation.ToBaseRelativePath(Navigation.Uri);
            Navigation.NavigateTo(here.Length == 0 ? "/signin" : "/signin?returnUrl=" + Uri.EscapeDataString("/" + here), forceLoad: true);
            return;
        }
        Session = session;
        await LoadAsync();
    }

    /// <summary>Reads what the page shows, scoped to <see cref="Session"/>'s account.</summary>
    protected abstract Task LoadAsync();

    /// <summary>Answers this request with the 404 page (another account's id, or none at all).</summary>
    protected void NotFound() => Navigation.NotFound();
}
