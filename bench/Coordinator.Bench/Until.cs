namespace Coordinator.Bench;

/// <summary>Waits for a state the harness can observe (polls parked, jobs started) instead of sleeping a guessed time.</summary>
public static class Until
{
    public static async Task TrueAsync(Func<Task<bool>> condition, string what, int timeoutSeconds = 120)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting until {what}");
            await Task.Delay(10);
        }
    }

    public static Task TrueAsync(Func<bool> condition, string what, int timeoutSeconds = 120) =>
        TrueAsync(() => Task.FromResult(condition()), what, timeoutSeconds);
}
