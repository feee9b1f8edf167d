namespace Coordinator.Grains.Lightning.Payments;

/// <summary>
/// The Lightning node failed: it was unreachable or too slow, refused the key, answered an error or a body we cannot read,
/// or a payment failed. <see cref="Exception.Message"/> is safe to show an API client: it never holds a key or the node's
/// address; the details for the operator go to the log where the failure is raised.
/// <see cref="NodeAnswered"/>: the node answered (an error, or a failed payment), so it finished with the request; false when
/// it was unreachable or too slow, and a payment may have gone out regardless.
/// </summary>
public sealed class LightningException(string message, Exception? innerException = null, bool nodeAnswered = false) : Exception(message, innerException)
{
    public bool NodeAnswered { get; } = nodeAnswered;
}
