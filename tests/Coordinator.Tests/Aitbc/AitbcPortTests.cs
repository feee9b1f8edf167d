using System.Net;
using System.Text.Json;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Aitbc;

/// <summary>The AITBC API answers on its own port with its own paths, and the two front doors stay apart.</summary>
public sealed class AitbcPortTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    [Fact]
    public async Task Health_AnswersOnTheAitbcPort_WithStatusAndVersion()
    {
        using var response = await fixture.Host.Aitbc.GetAsync("health");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("ok", body.RootElement.GetProperty("status").GetString());
        Assert.Equal("1.0.0", body.RootElement.GetProperty("version").GetString());
    }

    [Fact]
    public async Task TheFrontDoorsStayApart()
    {
        // The Grid API is not served on the AITBC port, and the AITBC API not on the main port.
        using var gridOnAitbc = await fixture.Host.Aitbc.GetAsync("api/v1/health");
        Assert.Equal(HttpStatusCode.NotFound, gridOnAitbc.StatusCode);
        using var error = JsonDocument.Parse(await gridOnAitbc.Content.ReadAsStringAsync());
        Assert.Equal("not_found", error.RootElement.GetProperty("error_code").GetString());
        Assert.False(string.IsNullOrEmpty(error.RootElement.GetProperty("detail").GetString()));

        using var openAiOnAitbc = await fixture.Host.Aitbc.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.NotFound, openAiOnAitbc.StatusCode);

        using var aitbcOnMain = await fixture.Host.Http.GetAsync(new Uri(fixture.Host.BaseAddress, "/health"));
        Assert.Equal(HttpStatusCode.NotFound, aitbcOnMain.StatusCode);
        using var empty = new StringContent("{}");
        using var aitbcJobsOnMain = await fixture.Host.Http.PostAsync(new Uri(fixture.Host.BaseAddress, "/v1/jobs"), empty);
        Assert.Equal(HttpStatusCode.NotFound, aitbcJobsOnMain.StatusCode);
    }

    [Fact]
    public async Task SigningKeys_OnAGridThatSignedNothingYet_ListItsKey()
    {
        // This class's grid completes no job: the list made the grid's key rather than answer an empty list.
        using var response = await fixture.Host.Aitbc.GetAsync("v1/signing-keys");
        using var keys = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var key = Assert.Single(keys.RootElement.EnumerateArray());
        Assert.True(key.GetProperty("active").GetBoolean());
        Assert.Equal(43, key.GetProperty("key_id").GetString()!.Length);
    }
}
