using System.Net;
using System.Text;
using Coordinator.Tests.Infrastructure;

namespace Coordinator.Tests.Operator;

/// <summary>Bad input to the operator endpoints: always a 4xx in the Grid API's error shape, never a 5xx.</summary>
public class OperatorFuzzTests(OperatorHostFixture fixture) : IClassFixture<OperatorHostFixture>
{
    private async Task<int> SendAsync(HttpMethod method, string path, byte[]? body, string? contentType, List<string> failures, string what, bool expectContinue = false)
    {
        using var request = OperatorHost.Request(method, path, fixture.OperatorKey);
        // A huge body waits for the server's go-ahead, which a 413 never gives, so the answer is read instead of a broken upload.
        if (expectContinue) request.Headers.ExpectContinue = true;
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            if (contentType is not null) request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }
        using var response = await fixture.Operator.SendAsync(request);
        var status = (int)response.StatusCode;
        var text = await response.Content.ReadAsStringAsync();
        if (status >= 500) failures.Add($"{what} → {status}: {text}");
        else if (status >= 400 && !text.Contains("\"error\"", StringComparison.Ordinal)) failures.Add($"{what} → {status} without the error shape: {text}");
        return status;
    }

    [Fact]
    public async Task DisableBodies_AreA4xxOrAccepted_NeverA5xx()
    {
        var random = new Random(19_3);
        var failures = new List<string>();
        // An account that does not exist: a valid body answers 404, a bad one 422; nothing is ever disabled.
        const string path = "accounts/9000000000/disable";
        foreach (var (what, body, contentType) in Fuzz.RefusedBodies("""{"reason": "spam"}"""))
        {
            var status = await SendAsync(HttpMethod.Post, path, body, contentType, failures, $"disable with {what}");
            if (status < 400) failures.Add($"disable with {what} → {status}");
        }
        for (var i = 0; i < 150; i++)
        {
            var body = Fuzz.RandomBody(random, ["reason"]);
            var status = await SendAsync(HttpMethod.Post, path, Fuzz.ToBytes(random, body), "application/json", failures, $"disable with {body}");
            if (status < 400) failures.Add($"disable with {body} → {status}");
        }
        var huge = Encoding.UTF8.GetBytes("{\"reason\": \"" + new string('x', 9 * 1024 * 1024) + "\"}");
        try
        {
            var hugeStatus = await SendAsync(HttpMethod.Post, path, huge, "application/json", failures, "disable with 9 MiB", expectContinue: true);
            if (hugeStatus != 413) failures.Add($"disable with 9 MiB → {hugeStatus}, not 413");
        }
        catch (HttpRequestException)
        {
            // The server may close the connection after its 413 while the client still sends: a refusal too (as Fuzz.CheckRefusedAsync allows).
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [InlineData("POST", "accounts/abc/disable")]
    [InlineData("POST", "accounts/-1/disable")]
    [InlineData("POST", "accounts/99999999999999999999999/enable")]
    [InlineData("GET", "accounts/1.5")]
    [InlineData("POST", "payouts/abc/settle")]
    [InlineData("POST", "payouts/0/settle")]
    [InlineData("POST", "payouts/-9223372036854775808/settle")]
    [InlineData("DELETE", "payouts")]
    [InlineData("GET", "accounts/1/disable")]
    [InlineData("PUT", "cluster")]
    [InlineData("GET", "nothing-here")]
    [InlineData("POST", "signin")]
    public async Task BadIdsAndMethods_Are4xx(string method, string path)
    {
        var failures = new List<string>();
        var status = await SendAsync(new HttpMethod(method), path, null, null, failures, $"{method} {path}");
        Assert.True(status is >= 400 and < 500, $"{method} {path} → {status}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
