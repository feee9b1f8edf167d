using System.Net.Http.Headers;
using Coordinator.Api.Operator;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Operator;

/// <summary>Nodes with an operator key configured, and clients of their <c>/operator</c> surfaces.</summary>
public static class OperatorHost
{
    /// <summary>The settings that configure <paramref name="operatorKey"/>'s hash (and nothing else).</summary>
    public static Dictionary<string, string?> Settings(string operatorKey, IDictionary<string, string?>? more = null)
    {
        var settings = new Dictionary<string, string?>(more ?? new Dictionary<string, string?>()) { ["Operator:KeyHashes:0"] = OperatorKeys.HashLine(operatorKey) };
        return settings;
    }

    /// <summary>A client of the node's <c>/operator/</c> paths that follows no redirects and keeps no cookies.</summary>
    public static HttpClient Client(GridHost host)
    {
#pragma warning disable CA2000 // the client owns the handler (disposeHandler: true) and the caller owns the client
        var handler = new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false };
        return new HttpClient(handler, disposeHandler: true) { BaseAddress = new Uri(host.BaseAddress, "/operator/"), Timeout = TimeSpan.FromSeconds(60) };
#pragma warning restore CA2000
    }

    /// <summary>A request to an operator path with a bearer key (none when null).</summary>
    public static HttpRequestMessage Request(HttpMethod method, string path, string? bearer, string? json = null)
    {
        var request = new HttpRequestMessage(method, path);
        if (bearer is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        if (json is not null) request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        return request;
    }

    public static async Task<HttpResponseMessage> SendAsync(HttpClient http, HttpMethod method, string path, string? bearer, string? json = null)
    {
        using var request = Request(method, path, bearer, json);
        return await http.SendAsync(request);
    }

    /// <summary>Signs in through the form; answers the operator cookie (<c>name=value</c>).</summary>
    public static async Task<string> SignInAsync(HttpClient http, string operatorKey)
    {
        using var form = new FormUrlEncodedContent([new("key", operatorKey), new("return", "/operator/cluster")]);
        using var response = await http.PostAsync("signin", form);
        Assert.Equal(System.Net.HttpStatusCode.Redirect, response.StatusCode);
        Assert.Equal("/operator/cluster", response.Headers.Location?.OriginalString);
        var cookie = response.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith(OperatorGate.CookieName + "=", StringComparison.Ordinal));
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        return cookie.Split(';')[0];
    }

    /// <summary>A GET with a cookie header.</summary>
    public static async Task<HttpResponseMessage> GetWithCookieAsync(HttpClient http, string path, string cookie, string? accept = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Add("Cookie", cookie);
        if (accept is not null) request.Headers.Add("Accept", accept);
        return await http.SendAsync(request);
    }
}

/// <summary>A node on its own database with one operator key configured.</summary>
public sealed class OperatorHostFixture : IAsyncLifetime
{
    private GridHost? _host;

    public string OperatorKey { get; } = OperatorKeys.Generate();

    public GridHost Host => _host ?? throw new InvalidOperationException("not started");

    public HttpClient Operator { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _host = await GridHost.StartAsync(settings: OperatorHost.Settings(OperatorKey));
        Operator = OperatorHost.Client(_host);
    }

    public async Task DisposeAsync()
    {
        Operator?.Dispose();
        if (_host is not null) await _host.DisposeAsync();
    }
}
