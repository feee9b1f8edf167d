namespace Coordinator.Grains.Webhooks;

/// <summary>Webhook delivery settings, bound from the <c>Webhooks</c> configuration section.</summary>
public sealed class WebhookOptions
{
    public const string Section = "Webhooks";

    /// <summary>Allow targets on loopback, link-local, private and unique-local addresses. Default: false (SSRF guard on).</summary>
    public bool AllowPrivateNetworks { get; set; }

    /// <summary>Networks allowed even though private, in CIDR notation (e.g. <c>10.1.0.0/16</c>). Default: none.</summary>
    public List<string> AllowedNetworks { get; set; } = [];

    /// <summary>Allow plain http targets. Default: true (https is always allowed).</summary>
    public bool AllowHttp { get; set; } = true;

    /// <summary>A delivery counts when the target answers 2xx within this. Default: 10 s.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a failing delivery is retried before it is marked failed. Default: 24 hours.</summary>
    public TimeSpan RetryFor { get; set; } = TimeSpan.FromHours(24);

    /// <summary>First retry delay; it doubles each attempt (with ±50 % jitter) up to <see cref="MaxBackoff"/>. Default: 10 s.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Longest delay between attempts. Default: 1 hour.</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromHours(1);

    /// <summary>How often each node looks for due deliveries. Default: 1 s.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Whether this node runs the sender loop. Default: true. Tests switch it off and send by hand.</summary>
    public bool RunSender { get; set; } = true;
}
