// Package providers shows taskflow's agent tool driven by a model of each
// major provider: OpenAI (github.com/openai/openai-go/v3), Anthropic
// (github.com/anthropics/anthropic-sdk-go/v2) and Gemini (plain net/http
// and JSON: Google's Go SDK, google.golang.org/genai, is not on the module
// proxy this project can reach). Each Run function is the whole host
// loop: hand the definitions to the model, route each tool call to
// agenttool.Tool.CallTool with the caller's session, send the results
// back, until the model answers in text.
//
// It is its own module (it brings the SDKs as dependencies); the library
// stays dependency-free.
package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"

	"github.com/taskflow-dev/taskflow/agenttool"
)

// MaxRounds bounds a conversation's model calls.
const MaxRounds = 10

// OpenAITools converts taskflow's OpenAI definitions into the SDK's
// parameter type. With strict, the strict-mode form.
func OpenAITools(set agenttool.Set, strict bool) ([]openai.ChatCompletionToolUnionParam, error) {
	var out []openai.ChatCompletionToolUnionParam
	for _, t := range agenttool.OpenAIDefinitions(set, strict) {
		var params openai.FunctionParameters
		if err := json.Unmarshal(t.Function.Parameters, &params); err != nil {
			return nil, err
		}
		fn := openai.FunctionDefinitionParam{
			Name:        t.Function.Name,
			Description: openai.String(t.Function.Description),
			Parameters:  params,
		}
		if strict {
			fn.Strict = openai.Bool(true)
		}
		out = append(out, openai.ChatCompletionFunctionTool(fn))
	}
	return out, nil
}

// RunOpenAI runs a Chat Completions conversation that starts with prompt
// and lets the model drive flows as session; it returns the model's final
// text.
func RunOpenAI(ctx context.Context, client openai.Client, model string, tool *agenttool.Tool, session agenttool.Session, prompt string) (string, error) {
	tools, err := OpenAITools(agenttool.PerAction, true)
	if err != nil {
		return "", err
	}
	messages := []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}
	for range MaxRounds {
		res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: model, Messages: messages, Tools: tools,
		})
		if err != nil {
			return "", err
		}
		if len(res.Choices) == 0 {
			return "", fmt.Errorf("openai: no choice in the answer")
		}
		msg := res.Choices[0].Message
		if len(msg.ToolCalls) == 0 {
			return msg.Content, nil
		}
		messages = append(messages, msg.ToParam())
		for _, call := range msg.ToolCalls {
			out := toolResult(tool.CallTool(ctx, session, call.Function.Name, json.RawMessage(call.Function.Arguments)))
			messages = append(messages, openai.ToolMessage(out, call.ID))
		}
	}
	return "", fmt.Errorf("openai: no final answer within %d rounds", MaxRounds)
}

// AnthropicTools converts taskflow's Anthropic definitions into the SDK's
// parameter type.
func AnthropicTools(set agenttool.Set) ([]anthropic.ToolUnionParam, error) {
	var out []anthropic.ToolUnionParam
	for _, t := range agenttool.AnthropicDefinitions(set) {
		var schema struct {
			Properties map[string]any `json:"properties"`
			Required   []string       `json:"required"`
		}
		if err := json.Unmarshal(t.InputSchema, &schema); err != nil {
			return nil, err
		}
		out = append(out, anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
			Name:        t.Name,
			Description: anthropic.String(t.Description),
			InputSchema: anthropic.ToolInputSchemaParam{Properties: schema.Properties, Required: schema.Required},
		}})
	}
	return out, nil
}

// RunAnthropic runs a Messages API conversation that starts with prompt
// and lets the model drive flows as session; it returns the model's final
// text.
func RunAnthropic(ctx context.Context, client anthropic.Client, model string, tool *agenttool.Tool, session agenttool.Session, prompt string) (string, error) {
	tools, err := AnthropicTools(agenttool.PerAction)
	if err != nil {
		return "", err
	}
	messages := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}
	for range MaxRounds {
		res, err := client.Messages.New(ctx, anthropic.MessageNewParams{
			Model: anthropic.Model(model), MaxTokens: 1024, Messages: messages, Tools: tools,
		})
		if err != nil {
			return "", err
		}
		messages = append(messages, res.ToParam())
		var results []anthropic.ContentBlockParamUnion
		var text strings.Builder
		for _, block := range res.Content {
			switch block.Type {
			case "text":
				text.WriteString(block.Text)
			case "tool_use":
				out, err := tool.CallTool(ctx, session, block.Name, block.Input)
				results = append(results, anthropic.NewToolResultBlock(block.ID, toolResult(out, err), err != nil))
			}
		}
		if len(results) == 0 {
			return text.String(), nil
		}
		messages = append(messages, anthropic.NewUserMessage(results...))
	}
	return "", fmt.Errorf("anthropic: no final answer within %d rounds", MaxRounds)
}

// toolResult is what the model reads back: the result, or the error text
// (written for the model: it says what to fix).
func toolResult(out json.RawMessage, err error) string {
	if err != nil {
		return err.Error()
	}
	return string(out)
}

// Gemini's generateContent request and answer, as far as the loop needs
// them (ai.google.dev/api/generate-content).
type (
	geminiRequest struct {
		Contents []geminiContent `json:"contents"`
		Tools    []geminiTool    `json:"tools"`
	}
	geminiTool struct {
		FunctionDeclarations []agenttool.GeminiDefinition `json:"functionDeclarations"`
	}
	geminiContent struct {
		Role  string       `json:"role"`
		Parts []geminiPart `json:"parts"`
	}
	geminiPart struct {
		Text             string                  `json:"text,omitempty"`
		FunctionCall     *geminiFunctionCall     `json:"functionCall,omitempty"`
		FunctionResponse *geminiFunctionResponse `json:"functionResponse,omitempty"`
	}
	geminiFunctionCall struct {
		Name string          `json:"name"`
		Args json.RawMessage `json:"args"`
	}
	geminiFunctionResponse struct {
		Name     string          `json:"name"`
		Response json.RawMessage `json:"response"`
	}
	geminiResponse struct {
		Candidates []struct {
			Content geminiContent `json:"content"`
		} `json:"candidates"`
	}
)

// GeminiEndpoint is the generateContent URL of a model.
func GeminiEndpoint(model string) string {
	return "https://generativelanguage.googleapis.com/v1beta/models/" + model + ":generateContent"
}

// RunGemini runs a generateContent conversation against endpoint (see
// GeminiEndpoint) with apiKey, and lets the model drive flows as session;
// it returns the model's final text.
func RunGemini(ctx context.Context, hc *http.Client, endpoint, apiKey string, tool *agenttool.Tool, session agenttool.Session, prompt string) (string, error) {
	req := geminiRequest{
		Contents: []geminiContent{{Role: "user", Parts: []geminiPart{{Text: prompt}}}},
		Tools:    []geminiTool{{FunctionDeclarations: agenttool.GeminiDefinitions(agenttool.PerAction)}},
	}
	for range MaxRounds {
		res, err := postGemini(ctx, hc, endpoint, apiKey, req)
		if err != nil {
			return "", err
		}
		if len(res.Candidates) == 0 {
			return "", fmt.Errorf("gemini: no candidate in the answer")
		}
		content := res.Candidates[0].Content
		req.Contents = append(req.Contents, content)
		var replies []geminiPart
		var text strings.Builder
		for _, p := range content.Parts {
			if p.FunctionCall == nil {
				text.WriteString(p.Text)
				continue
			}
			out, err := tool.CallTool(ctx, session, p.FunctionCall.Name, p.FunctionCall.Args)
			response := out
			if err != nil { // a function response is an object
				response, _ = json.Marshal(map[string]string{"error": err.Error()})
			}
			replies = append(replies, geminiPart{FunctionResponse: &geminiFunctionResponse{Name: p.FunctionCall.Name, Response: response}})
		}
		if len(replies) == 0 {
			return text.String(), nil
		}
		req.Contents = append(req.Contents, geminiContent{Role: "user", Parts: replies})
	}
	return "", fmt.Errorf("gemini: no final answer within %d rounds", MaxRounds)
}

func postGemini(ctx context.Context, hc *http.Client, endpoint, apiKey string, body geminiRequest) (*geminiResponse, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-goog-api-key", apiKey)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("gemini: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	var res geminiResponse
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("gemini: decoding the answer: %w", err)
	}
	return &res, nil
}
