using Coordinator.Grains;

namespace Coordinator.Tests.Unit;

public class ModelNamesTests
{
    [Theory]
    [InlineData("llama3:8b", "llama3")]
    [InlineData("mistral", "mistral")]
    [InlineData("hf.co/user/repo:Q4_K_M", "hf.co/user/repo")]
    [InlineData("qwen2.5:14b-instruct", "qwen2.5")]
    public void FamilyOf_IsTheNameBeforeTheTag(string model, string family) => Assert.Equal(family, ModelNames.FamilyOf(model));

    [Theory]
    [InlineData("llama3:8b", "Llama 3 8B")]
    [InlineData("qwen2.5:14b", "Qwen 2.5 14B")]
    [InlineData("mistral:latest", "Mistral")]
    [InlineData("library/phi3:mini", "Phi 3 mini")]
    public void DisplayNameOf_IsReadable(string model, string display) => Assert.Equal(display, ModelNames.DisplayNameOf(model));

    [Theory]
    [InlineData("llama3:8b", true)]
    [InlineData("hf.co/user/repo:Q4_K_M", true)]
    [InlineData("", false)]
    [InlineData(" llama3", false)]
    [InlineData("llama3\n8b", false)]
    [InlineData("a b", false)]
    public void IsValid_AcceptsOllamaNamesOnly(string model, bool valid) => Assert.Equal(valid, ModelNames.IsValid(model));

    [Fact]
    public void IsValid_RefusesOverlongNames() => Assert.False(ModelNames.IsValid(new string('a', ModelNames.MaxLength + 1)));
}
