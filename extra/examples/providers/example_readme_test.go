package providers_test

// The README's snippets for the providers' SDKs, each the whole body of an
// example (compiled, not run); TestReadmeGoSnippets in the root module
// checks the README against them.

import (
	"context"
	"encoding/json"
	"log"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/taskflow-dev/taskflow/agenttool"
)

var (
	ctx             = context.Background()
	tool            *agenttool.Tool
	session         agenttool.Session
	model           string
	openaiClient    openai.Client
	messages        []openai.ChatCompletionMessageParamUnion
	anthropicClient anthropic.Client
	turns           []anthropic.MessageParam
)

func Example_readmeOpenAI() {
	// OpenAI (github.com/openai/openai-go/v3): strict function calling.
	var tools []openai.ChatCompletionToolUnionParam
	for _, t := range agenttool.OpenAIDefinitions(agenttool.PerAction, true) {
		var params openai.FunctionParameters
		_ = json.Unmarshal(t.Function.Parameters, &params)
		tools = append(tools, openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name: t.Function.Name, Description: openai.String(t.Function.Description),
			Parameters: params, Strict: openai.Bool(true),
		}))
	}
	res, err := openaiClient.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: messages, Tools: tools})
	if err != nil {
		log.Fatal(err)
	}
	messages = append(messages, res.Choices[0].Message.ToParam())
	for _, call := range res.Choices[0].Message.ToolCalls {
		out, err := tool.CallTool(ctx, session, call.Function.Name, json.RawMessage(call.Function.Arguments))
		if err != nil {
			out = []byte(err.Error()) // the model reads what to fix
		}
		messages = append(messages, openai.ToolMessage(string(out), call.ID))
	}
}

func Example_readmeAnthropic() {
	// Anthropic (github.com/anthropics/anthropic-sdk-go/v2).
	var tools []anthropic.ToolUnionParam
	for _, t := range agenttool.AnthropicDefinitions(agenttool.PerAction) {
		var schema struct {
			Properties map[string]any `json:"properties"`
			Required   []string       `json:"required"`
		}
		_ = json.Unmarshal(t.InputSchema, &schema)
		tools = append(tools, anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
			Name: t.Name, Description: anthropic.String(t.Description),
			InputSchema: anthropic.ToolInputSchemaParam{Properties: schema.Properties, Required: schema.Required},
		}})
	}
	res, err := anthropicClient.Messages.New(ctx, anthropic.MessageNewParams{
		Model: anthropic.Model(model), MaxTokens: 1024, Messages: turns, Tools: tools,
	})
	if err != nil {
		log.Fatal(err)
	}
	var results []anthropic.ContentBlockParamUnion
	for _, block := range res.Content {
		if block.Type == "tool_use" {
			out, err := tool.CallTool(ctx, session, block.Name, block.Input)
			if err != nil {
				out = []byte(err.Error()) // the model reads what to fix
			}
			results = append(results, anthropic.NewToolResultBlock(block.ID, string(out), err != nil))
		}
	}
	turns = append(turns, res.ToParam(), anthropic.NewUserMessage(results...))
}
